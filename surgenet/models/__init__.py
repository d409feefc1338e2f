"""Task models on SurgeNet backbones: segmentation (FPN), phase recognition (causal TCN/LSTM)
and critical view of safety, with ``save_pretrained``/``from_pretrained``/``push_to_hub``."""

from .base import TASK_CLASSES, SurgeNetModel
from .cvs import CVS_CRITERIA, CVSModel
from .loading import load_model
from .phase import PhaseModel
from .segmentation import SegmentationModel

TASKS = tuple(sorted(TASK_CLASSES))

__all__ = ["CVS_CRITERIA", "CVSModel", "PhaseModel", "SegmentationModel", "SurgeNetModel", "TASKS", "load_model"]
