"""Old module names still import, as the very module at its new place, with a FutureWarning."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import surgenet
from surgenet._moved import MOVED, new_name

PACKAGE = Path(surgenet.__file__).parent


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_name_gives_the_moved_module(old):
    new = MOVED[old]
    relative = Path(*new.split(".")[1:])
    assert (PACKAGE / relative).is_dir() or (PACKAGE / relative).with_suffix(".py").is_file(), new
    sys.modules.pop(old, None)
    with pytest.warns(FutureWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__spec__.name == new  # the alias does not take over the module's identity


def test_a_submodule_of_a_moved_package_is_not_loaded_twice():
    for name in ("surgenet.backbones.architectures", "surgenet.converters.vit"):
        sys.modules.pop(name, None)
        with pytest.warns(FutureWarning):
            old = importlib.import_module(name)
        assert old is importlib.import_module(new_name(name))


def test_names_that_did_not_move_are_left_to_the_import_system():
    assert new_name("surgenet.predict") is None and new_name("surgenet.registryx") is None
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("surgenet.never_existed")
