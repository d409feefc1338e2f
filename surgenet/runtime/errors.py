"""Errors of exporting and running exported models; all are :class:`surgenet.exceptions.SurgeNetError` subclasses."""

from __future__ import annotations

from ..exceptions import SurgeNetError


class ExportError(SurgeNetError):
    """An export that cannot be done or whose result cannot be trusted."""


class ParityError(ExportError):
    """An exported model whose outputs differ from PyTorch's by more than the tolerance."""


class BackendUnavailableError(ExportError):
    """A runtime that is not installed here or needs hardware this machine lacks."""
