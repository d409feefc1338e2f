"""Exception types of surgenet: each message says what went wrong and how to fix it."""

from __future__ import annotations

from typing import Iterable


class SurgeNetError(Exception):
    """Base class of every error that surgenet raises on purpose."""


class UnknownModelError(SurgeNetError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class CheckpointError(SurgeNetError):
    """A weights file that cannot be read: missing, truncated, corrupt or unsafe."""


class KeyMismatchError(CheckpointError):
    """A state dict that does not map completely onto the network."""

    def __init__(self, source: str, missing: Iterable[str], unexpected: Iterable[str],
                 shape_mismatch: Iterable[str] = ()) -> None:
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.shape_mismatch = sorted(shape_mismatch)
        super().__init__(self._message(source))

    def _message(self, source: str) -> str:
        def block(title: str, keys: list[str]) -> str:
            if not keys:
                return ""
            shown = "\n".join(f"    {k}" for k in keys[:25])
            more = f"\n    ... and {len(keys) - 25} more" if len(keys) > 25 else ""
            return f"\n  {title} ({len(keys)}):\n{shown}{more}"

        return (
            f"weights from {source} do not match the network."
            + block("missing keys", self.missing)
            + block("unexpected keys", self.unexpected)
            + block("shape mismatches", self.shape_mismatch)
            + "\n  Check that the file belongs to this architecture (surgenet.model_info(name)['arch'])"
            " and pass the matching model name."
        )


class WeightsNotAvailableError(SurgeNetError):
    """Released weights that cannot be obtained (offline with no cache, no network)."""


class InputError(SurgeNetError, ValueError):
    """An image, video or tensor that the model cannot take as it is."""


class MissingExtraError(SurgeNetError, ImportError):
    """An optional dependency that is not installed; the message names the extra to install."""
