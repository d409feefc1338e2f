"""The one table of the numbers a user may give, and the checks built from it.

Every number a user types (a command-line flag, a training config key, a ``--set`` override) or
that a saved model's ``config.json`` holds reaches a division, an allocation or a loop bound
somewhere; each is checked here against a stated range before any work starts, so that
``--image-size 100000`` (a 120 GB tensor), ``--fps 1e-9`` (a loop without end), ``--epochs 0``
or ``--lr nan`` end in one line that names the flag or key, not in a hang or a traceback.
nan and inf are refused everywhere.

    p.add_argument("--batch-size", type=bounded("batch_size"), default=8)
    check_number("image_side", config["input_size"][0], "model/config.json: input_size")

The ranges are wide (far above any surgical recipe) and finite: they exist to stop a typo, not
to tune a run.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable

from .exceptions import InputError

GIB = 1024 ** 3


@dataclass(frozen=True)
class Bound:
    """A number's range: ``low`` to ``high`` (``low`` itself refused when ``low_open``), whole
    numbers only when ``kind`` is ``int``, a multiple of ``multiple`` where a model needs it."""

    low: float
    high: float
    kind: type
    why: str
    low_open: bool = False
    multiple: int = 1

    def describe(self) -> str:
        """The range in words, as the error messages and the docs say it."""
        low = f"> {_fmt(self.low)}" if self.low_open else f">= {_fmt(self.low)}"
        text = f"{low} and <= {_fmt(self.high)}"
        if self.multiple > 1:
            text += f", a multiple of {self.multiple}"
        return text


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# name -> Bound. The names are quantities, shared by every flag and config key that holds one.
BOUNDS: dict[str, Bound] = {
    # sizes that allocate: one float32 RGB input of 4096 x 4096 is 200 MB, times the batch
    "image_side": Bound(16, 4096, int, "a model input side in pixels"),
    "batch_size": Bound(1, 4096, int, "images per step or forward pass"),
    "num_classes": Bound(1, 1024, int, "classes, phases or tools of a head"),
    "class_id": Bound(0, 1023, int, "a class index of a mask"),
    "channels": Bound(1, 262144, int, "a layer width (head, projector, prototypes)"),
    "layers": Bound(1, 64, int, "layers of a head or projector"),
    "crops": Bound(0, 64, int, "extra views per image"),
    "clip_length": Bound(1, 1024, int, "frames per training clip"),
    "cache_reduction": Bound(1, 64, int, "the logits cache is image_size / this"),
    "frames": Bound(1, 10_000_000, int, "frames to read or score"),
    "calib_frames": Bound(1, 100_000, int, "calibration frames"),
    "contact_frames": Bound(0, 1000, int, "frames on a contact sheet (0: none)"),
    "upload_bytes": Bound(1, 16 * GIB, int, "the largest upload in bytes (at most 16 GB)"),
    "workspace_gib": Bound(0, 1024, float, "TensorRT workspace in GiB", low_open=True),
    # loop bounds
    "epochs": Bound(1, 10_000, int, "training epochs"),
    "epochs_or_zero": Bound(0, 10_000, int, "epochs (0: none)"),
    "steps": Bound(1, 100_000_000, int, "training steps"),
    "every_steps": Bound(1, 100_000_000, int, "steps between two records or checkpoints"),
    "samples_per_epoch": Bound(1, 1_000_000_000, int, "images per epoch"),
    "patience": Bound(0, 10_000, int, "epochs without a better score before stopping (0: never)"),
    "iterations": Bound(1, 1_000_000, int, "timed iterations"),
    "warmup_iterations": Bound(0, 1_000_000, int, "untimed iterations first"),
    "iterations_or_zero": Bound(0, 1000, int, "iterations of a small loop (0: none)"),
    "stride": Bound(1, 100_000, int, "every N-th frame"),
    "keyframe_interval": Bound(1, 10_000, int, "frames between two keyframes"),
    "neighbours": Bound(1, 10_000, int, "kNN neighbours"),
    "copies": Bound(1, 1000, int, "copies of each input"),
    "folders": Bound(0, 1000, int, "folders added (0: none)"),
    "runs": Bound(1, 1000, int, "repeated runs"),
    "seed": Bound(0, 2 ** 32 - 1, int, "a random seed"),
    "layer_index": Bound(-64, 64, int, "a stage or block index (negative: from the last)"),
    # processes and threads
    "workers": Bound(0, 256, int, "data-loading worker processes (0: in the main process)"),
    "actors": Bound(1, 256, int, "parallel model workers"),
    "threads": Bound(1, 1024, int, "CPU threads"),
    "port": Bound(1, 65535, int, "a TCP port"),
    # rates and divisors
    "fps": Bound(0.001, 1000, float, "frames per second (0.001: one frame every 17 minutes)"),
    "lr": Bound(0, 10, float, "a learning rate", low_open=True),
    "lr_or_zero": Bound(0, 10, float, "a learning rate (0 freezes what it drives)"),
    "temperature": Bound(0, 100, float, "a softmax temperature (it divides the logits)", low_open=True),
    "loss_weight": Bound(0, 1000, float, "the weight of a loss term (0: off)"),
    "weight_decay": Bound(0, 10, float, "a weight decay"),
    "grad_clip": Bound(0, 1e6, float, "a gradient norm limit (0: off)"),
    "mixture_weight": Bound(0, 1e6, float, "a data source's share of the epoch", low_open=True),
    "seconds": Bound(0, 7 * 24 * 3600, float, "seconds (at most a week)", low_open=True),
    "points": Bound(0, 100, float, "percentage points"),
    # shares
    "fraction": Bound(0, 1, float, "a probability or share between 0 and 1"),
    "share": Bound(0, 1, float, "a share of an image's area", low_open=True),
    "mask_ratio": Bound(0, 0.95, float, "the share of patches masked (some must stay)"),
    "momentum": Bound(0, 1, float, "a momentum or moving-average factor"),
    "norm_mean": Bound(0, 1, float, "a normalisation mean of pixels in 0..1"),
    "norm_std": Bound(0, 1, float, "a normalisation standard deviation (it divides)", low_open=True),
    "jpeg_quality": Bound(1, 100, int, "a JPEG quality"),
    "opset": Bound(17, 20, int, "an ONNX opset this exporter supports"),
}


def _fail(message: str, flag: bool, label: str) -> Exception:
    return argparse.ArgumentTypeError(message) if flag else InputError(f"{label}: {message}.")


def _check(bound: Bound, value: Any, text: str, flag: bool, label: str) -> int | float:
    """``value`` (already a number) inside ``bound``, or the error that says where it is not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a whole number" if bound.kind is int else "a number"
        raise _fail(f"expected {kind}, got {text}", flag, label)
    if isinstance(value, float) and math.isnan(value):
        raise _fail(f"expected a number, got {text} (not a number)", flag, label)
    if bound.kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise _fail(f"expected a whole number, got {text}", flag, label)
            value = int(value)
        if value < bound.low:
            raise _fail(f"must be >= {_fmt(bound.low)}, got {text} ({bound.why}: {bound.describe()})", flag, label)
        if value > bound.high:
            raise _fail(f"must be <= {_fmt(bound.high)}, got {text} ({bound.why}: {bound.describe()})", flag, label)
        if value % bound.multiple:
            raise _fail(f"must be a multiple of {bound.multiple}, got {text} ({bound.why})", flag, label)
        return value
    value = float(value)
    below = value <= bound.low if bound.low_open else value < bound.low
    if below or value > bound.high:  # inf is above every high
        if (bound.low, bound.high, bound.low_open) == (0, 1, False):
            raise _fail(f"must be between 0 and 1, got {text}", flag, label)
        raise _fail(f"must be a finite number {bound.describe()}, got {text} ({bound.why})", flag, label)
    return value


def _parse(bound: Bound, text: str) -> int | float:
    try:
        return int(text) if bound.kind is int else float(text)
    except (TypeError, ValueError):
        kind = "a whole number" if bound.kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None


def bounded(name: str) -> Callable[[str], Any]:
    """The argparse ``type=`` of a number of kind ``name`` of :data:`BOUNDS`: the number, or an
    ``ArgumentTypeError`` that argparse turns into one line naming the flag (exit code 2)."""
    bound = BOUNDS[name]

    def check(text: str) -> int | float:
        return _check(bound, _parse(bound, text), str(text), True, "")

    check.__name__ = name  # argparse names the type in some messages
    check.bound_name = name  # type: ignore[attr-defined]  # read by the tests that every flag is bounded
    return check


def check_number(name: str, value: Any, label: str) -> Any:
    """``value`` if it is a number of kind ``name`` inside its bound; else an
    :class:`~surgenet.exceptions.InputError` that starts with ``label`` (the config key, the
    file): for config files, ``--set`` values and saved models' ``config.json``."""
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            value = float(value) if BOUNDS[name].kind is float else int(value)
        except ValueError:
            pass
    return _check(BOUNDS[name], value, repr(value) if isinstance(value, str) else str(value), False, label)


__all__ = ["BOUNDS", "Bound", "bounded", "check_number"]
