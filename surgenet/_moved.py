"""Old module names of surgenet, kept importable with a FutureWarning (as timm keeps ``timm.models.layers``).

Modules moved when the zoo and the evaluation code got their own packages and names that say
what each does. ``import surgenet.registry`` (and every submodule of a moved package) gives the
module at its new place, the same object, so code written against the old names keeps working
while it is updated. The table is the one record of the moves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "surgenet.registry": "surgenet.zoo.registry",
    "surgenet.hub": "surgenet.zoo.hub",
    "surgenet.checkpoint": "surgenet.zoo.checkpoint",
    "surgenet.factory": "surgenet.zoo.factory",
    "surgenet.cards": "surgenet.zoo.cards",
    "surgenet.zoo_cards": "surgenet.zoo.card_files",
    "surgenet.backbones": "surgenet.zoo.backbones",
    "surgenet.backbones.features": "surgenet.zoo.backbones.feature_maps",
    "surgenet.converters": "surgenet.zoo.converters",
    "surgenet.metrics": "surgenet.evaluation.metrics",
    "surgenet.train.eval_plots": "surgenet.evaluation.plots",
    "surgenet.train.evaluation": "surgenet.evaluation.probes",
    "surgenet.features": "surgenet.patch_features",
    "surgenet.labels": "surgenet.label_sets",
    "surgenet.labelmaps": "surgenet.argmax",
    "surgenet.video.features": "surgenet.video.affinity",
    "surgenet.video.frames": "surgenet.video.frame_source",
    "surgenet.batch.frames": "surgenet.batch.decode",
    "surgenet.train.formats.frames": "surgenet.train.formats.frame_index",
    "surgenet.train.export": "surgenet.train.teacher_export",
    "surgenet.train.augment": "surgenet.train.multicrop",
    "surgenet.train.checkpointing": "surgenet.train.run_state",
    "surgenet.console.table": "surgenet.io.table",
    "surgenet.video.realtime_keyframes": "surgenet.realtime_keyframes",
}


def new_name(old: str) -> str | None:
    """The module's current name, for an old name or a submodule of a moved package; else None."""
    for moved in sorted(MOVED, key=len, reverse=True):
        if old == moved or old.startswith(moved + "."):
            return MOVED[moved] + old[len(moved):]
    return None


class _AliasLoader(importlib.abc.Loader):
    """Hands out the module at its new name; the import system files it under the old one too."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self._own = (module.__spec__, module.__loader__)
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__, module.__loader__ = self._own  # the import system stamped the alias's spec on it
        warnings.warn(f"{self.old} moved to {self.new}; import it from there (the old name will be removed).",
                      FutureWarning, stacklevel=2)


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        new = new_name(fullname) if fullname.startswith("surgenet.") else None
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(fullname, new))


def install() -> None:
    """Put the finder first, so a moved package's submodules are never loaded twice by path."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
