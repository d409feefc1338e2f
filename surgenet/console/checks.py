"""argparse ``type=`` checks shared by the surgenet commands: a wrong value stops the command at
parsing, with one line that names the option, before any model is built or any weight is read.
Numbers take :func:`surgenet.bounds.bounded` (the one table of ranges).

    p.add_argument("--stride", type=bounded("stride"), default=1)
    p.add_argument("--out", type=output_folder, required=True)
    p.add_argument("--device", type=device_name)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..exceptions import InputError, SurgeNetError
from ..bounds import BOUNDS, bounded


# The largest image side a command accepts (the table of bounds: surgenet.bounds): far above
# any model input, small enough that a batch of float32 frames at this size still fits in memory.
MAX_IMAGE_SIDE = int(BOUNDS["image_side"].high)

image_side = bounded("image_side")
"""An image side in pixels, within ``BOUNDS["image_side"]`` (a huge one would exhaust memory)."""


fraction = bounded("fraction")
"""A number in [0, 1] (probability thresholds, overlay opacity)."""


def existing_path(text: str) -> Path:
    """A file or folder that exists (inputs the user names)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist; check the path")
    return path


def existing_file(text: str) -> Path:
    """A file that exists (CSV lists, checkpoints)."""
    path = existing_path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is a folder; pass a file")
    return path


def _creatable(path: Path, text: str) -> None:
    """The nearest existing folder above ``path`` is a folder this user may write into."""
    nearest = next((p for p in path.parents if p.exists()), Path("."))
    if not nearest.is_dir():
        raise argparse.ArgumentTypeError(f"{nearest} is a file, so {text} cannot be created; pass a path in a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {nearest} (permission denied); pass a folder you can "
                                         "write to")


def output_folder(text: str) -> Path:
    """A folder to write into: it may exist (as a folder) or not yet, but must not be a file, and
    it must be creatable (no file on its way, write permission). The one ``--out`` check of every
    command that writes a folder, run at parsing, before any model is loaded."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is an existing file; pass a folder to write into")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"cannot write into {text} (permission denied); pass a folder you can "
                                             "write to")
        return path
    _creatable(path, text)
    return path


def output_file(text: str) -> Path:
    """A file to write (a picture, a report): not an existing folder, its folder creatable."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; pass a file name to write")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot overwrite {text} (permission denied); pass another file name")
    _creatable(path, text)
    return path


def model_reference(text: str) -> str:
    """A zoo name, an existing model folder or a valid Hub repo id (decided without the network)."""
    from ..models.loading import model_source

    try:
        model_source(text)
    except SurgeNetError as exc:  # InputError, or UnknownModelError with the closest names
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def zoo_name(text: str) -> str:
    """A name of the zoo (it fixes the architecture); weights from a folder go to ``--weights``."""
    from ..zoo.registry import get_entry

    try:
        return get_entry(text).name
    except SurgeNetError as exc:
        hint = " A folder of weights goes to --weights, with the zoo name of its architecture." \
            if Path(text).expanduser().exists() else ""
        raise argparse.ArgumentTypeError(f"{exc}{hint}") from None


def device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``xpu``, present on this machine."""
    from ..devices import resolve_device

    try:
        resolve_device(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


__all__ = ["MAX_IMAGE_SIDE", "device_name", "existing_file", "existing_path", "fraction", "image_side",
           "model_reference", "output_file", "output_folder", "zoo_name", "add_backend_auto_options"]


def add_backend_auto_options(parser: argparse.ArgumentParser) -> None:
    """``--auto-frames`` and ``--rebenchmark``: how ``--backend auto`` judges an export folder's
    candidates, the same two options on every command that runs export folders."""
    parser.add_argument("--auto-frames", type=existing_path, metavar="DIR",
                        help="--backend auto: judge the candidates on these frames (a folder of images, or a dataset "
                             "folder with images/ and masks/); default the Endoscapes frames shipped with surgenet")
    parser.add_argument("--rebenchmark", action="store_true",
                        help="--backend auto: measure the candidates again instead of using the cached choice")
