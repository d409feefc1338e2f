"""A batch sampler over all steps of a run: deterministic, sharded across ranks, resumable.

Step ``s`` takes slots ``[b * B, (b + 1) * B)`` of epoch ``s // steps_per_epoch`` (``b`` the step
within the epoch, ``B`` the global batch); rank ``r`` of ``W`` gets the ``r``-th of ``W`` equal
slices. One process with batch ``B`` and ``W`` processes with ``B / W`` each therefore see the same
images with the same crops, and a restart at step ``s`` needs nothing but ``s``.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

from ...exceptions import InputError
from .mixture import Mixture


class Slot(NamedTuple):
    """One sample: the frame to load and where it sits in the run (seeds its augmentation)."""

    frame_id: int
    epoch: int
    position: int  # index within the epoch's order


class StepSampler:
    """Yields, for steps ``start_step .. stop_step - 1``, this rank's list of :class:`Slot`."""

    def __init__(self, mixture: Mixture, global_batch: int, epochs: int, rank: int = 0,
                 world_size: int = 1, start_step: int = 0, stop_step: int | None = None) -> None:
        if global_batch % world_size:
            raise InputError(f"the global batch {global_batch} must be divisible by the number of "
                             f"processes {world_size}; change --batch-size.")
        self.steps_per_epoch = mixture.samples_per_epoch // global_batch
        if self.steps_per_epoch == 0:
            raise InputError(f"an epoch of {mixture.samples_per_epoch} images is smaller than one batch "
                             f"of {global_batch}: lower --batch-size or add data.")
        self.mixture = mixture
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.rank = rank
        self.total_steps = self.steps_per_epoch * epochs
        self.start_step = start_step
        self.stop_step = self.total_steps if stop_step is None else min(stop_step, self.total_steps)
        self._order_epoch = -1
        self._order = None

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)

    def slots(self, step: int) -> list[Slot]:
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self._order_epoch:
            self._order, self._order_epoch = self.mixture.epoch_order(epoch), epoch
        first = within * self.global_batch + self.rank * self.local_batch
        return [Slot(int(self._order[p]), epoch, p) for p in range(first, first + self.local_batch)]

    def __iter__(self) -> Iterator[list[Slot]]:
        for step in range(self.start_step, self.stop_step):
            yield self.slots(step)
