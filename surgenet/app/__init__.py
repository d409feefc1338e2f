"""The web demo (extra ``app``): ``surgenet app`` locally, or ``app.py`` as a Hugging Face Space.

A frame in: the segmentation overlay, a legend of classes with their share of the image and the
three CVS probabilities. A clip in: the overlaid video and the phase timeline. The functions
behind the page (:mod:`.analysis`) are plain Python, so they are tested without a browser.
"""

from __future__ import annotations

from typing import Sequence

from .analysis import ClipAnalysis, FrameAnalysis, analyse_clip, analyse_frame, phase_timeline_figure
from .catalog import ModelCatalog, ModelChoice

__all__ = ["ClipAnalysis", "FrameAnalysis", "ModelCatalog", "ModelChoice", "analyse_clip", "analyse_frame",
           "create_demo", "phase_timeline_figure"]


def create_demo(models: Sequence[str], pretrained: bool = True, device: str = "cpu"):
    """The Gradio app for ``models`` (zoo names and folders), models loaded and checked first."""
    from .ui import build_app

    catalog = ModelCatalog(models, pretrained=pretrained, device=device)
    catalog.warm_up()
    return build_app(catalog)
