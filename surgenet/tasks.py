"""The tasks surgenet models solve: the one list that the command lines, the Predictor, the export
tools and the benchmarks read. A new task is one more name here (and in ``MULTI_LABEL_TASKS`` if
its outputs are independent sigmoids), plus its model class in :mod:`surgenet.models`.

Light on purpose (no torch): argument parsers import it before anything is built.
"""

from __future__ import annotations

TASKS: tuple[str, ...] = ("segmentation", "phase", "cvs", "tools")

# Tasks whose outputs are independent sigmoids (a logit's sign is its decision), not one softmax.
MULTI_LABEL_TASKS: tuple[str, ...] = ("cvs", "tools")

__all__ = ["MULTI_LABEL_TASKS", "TASKS"]
