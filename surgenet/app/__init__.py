"""The web demo (extra ``app``): ``surgenet app`` locally, or ``app.py`` as a Hugging Face Space.

A frame in: the segmentation overlay, a legend of classes with their share of the image, and the
probabilities of the CVS criteria and of each tool, with those met / present at the threshold. A
clip in: the overlaid video, the phase timeline and tool (or CVS) probabilities over time. The functions
behind the page (:mod:`.analysis`) are plain Python, so they are tested without a browser.
"""

from __future__ import annotations

from typing import Sequence

from .analysis import (ClipAnalysis, FrameAnalysis, LabelScores, analyse_clip, analyse_frame,
                       labels_over_time_figure, phase_timeline_figure)
from .catalog import ModelCatalog, ModelChoice
from .serve import launch, private_folder

__all__ = ["ClipAnalysis", "FrameAnalysis", "LabelScores", "ModelCatalog", "ModelChoice", "analyse_clip",
           "analyse_frame", "create_demo", "labels_over_time_figure", "launch", "phase_timeline_figure",
           "private_folder"]


def create_demo(models: Sequence[str], pretrained: bool = True, device: str = "cpu", backend: str | None = None):
    """The Gradio app for ``models`` (zoo names and folders), models loaded and checked first;
    export folders run with ``backend`` (default ``auto``: chosen here, once). Serve it with
    :func:`launch` (the app's own files only)."""
    from .ui import build_app

    private_folder()  # before Gradio is imported

    catalog = ModelCatalog(models, pretrained=pretrained, device=device, backend=backend)
    catalog.warm_up()
    return build_app(catalog)
