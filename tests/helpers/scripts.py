"""The repository's scripts (``benchmarks/``, ``examples/``) loaded as modules by their path.

They import only the installed package, so nothing is put on ``sys.path``; each loads once per
test session under a name that cannot shadow a real module.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.helpers.paths import REPO


def load_script(relative: str) -> ModuleType:
    """The module of ``REPO/relative`` (e.g. ``"benchmarks/latency.py"``), executed once."""
    path = REPO / relative
    name = "script_" + "_".join(path.relative_to(REPO).with_suffix("").parts)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
