"""Task models on SurgeNet backbones: segmentation (FPN), phase recognition (causal TCN/LSTM),
critical view of safety and tool presence, with ``save_pretrained``/``from_pretrained``/``push_to_hub``."""

from ..tasks import TASKS
from .base import TASK_CLASSES, SurgeNetModel
from .cvs import CVS_CRITERIA, CVSModel
from .loading import load_model
from .phase import PhaseModel
from .segmentation import SegmentationModel
from .tools import ToolsModel

__all__ = ["CVS_CRITERIA", "CVSModel", "PhaseModel", "SegmentationModel", "SurgeNetModel", "TASKS", "ToolsModel",
           "load_model"]
