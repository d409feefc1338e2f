"""Optional dependencies of surgenet.video, imported on first use with an error naming the extra."""

from __future__ import annotations

from types import ModuleType

from ..exceptions import SurgeNetError


class MissingDependencyError(SurgeNetError, ImportError):
    """A package of an optional extra that is not installed."""


def cv2() -> ModuleType:
    try:
        import cv2 as module
    except ImportError as exc:
        raise MissingDependencyError("surgenet.video needs OpenCV: pip install 'surgenet[video]'.") from exc
    return module


def scipy_optimize() -> ModuleType:
    try:
        import scipy.optimize as module
    except ImportError as exc:
        raise MissingDependencyError("instrument tracks need SciPy: pip install 'surgenet[video]'.") from exc
    return module
