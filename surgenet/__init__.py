"""surgenet: the SurgeNet family of surgical foundation models, loaded correctly in one line.

``import surgenet`` stays light: torch and timm load on first use of a model function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _moved
from ._version import __version__ as __version__
from .zoo.registry import list_models as list_models
from .zoo.registry import model_info as model_info

_LAZY = {
    "load_backbone": "zoo.factory",
    "load_model": "models",
    "create_transform": "transforms",
    "Predictor": "predict",
}

_moved.install()  # the old module names (surgenet.registry, ...) still import, with a FutureWarning

__all__ = ["__version__", "list_models", "model_info", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from .zoo.factory import load_backbone as load_backbone
    from .models import load_model as load_model
    from .predict import Predictor as Predictor
    from .transforms import create_transform as create_transform


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'surgenet' has no attribute {name!r}")
