"""The one interface of every runner: ``runner(x) -> logits`` on numpy, plus ``runner.config``.

``x`` is a float32 NCHW batch as the config describes it (normalised with ``config['mean']`` /
``config['std']``; for graphs with baked preprocessing those are 0 and 1, i.e. RGB in 0..1).
Streaming graphs (phase) keep their temporal state inside the runner between calls: call
``reset()`` at the start of each video. ``run(feeds)`` is the raw multi-input form.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ExportError


class Runner(ABC):
    """Base class: subclasses implement :meth:`run` (all inputs by name -> all outputs in order)."""

    backend: str = ""

    def __init__(self, config: Mapping[str, Any], input_names: Sequence[str], output_names: Sequence[str],
                 device: str) -> None:
        self.config: dict[str, Any] = dict(config)
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.device = device
        self._state: list[np.ndarray] | None = None

    @property
    def streaming(self) -> bool:
        return bool(self.config.get("streaming", False))

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """One inference of the backend: named inputs -> outputs in graph order."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ExportError(f"{self.backend} runner takes a float32 batch (N, 3, H, W), got shape {x.shape}.")
        if not self.streaming:
            return self.run({self.input_names[0]: x})[0]
        if self._state is None or self._state_batch() != x.shape[0]:
            self._state = self.initial_state(x.shape[0])
        outputs = self.run({self.input_names[0]: x, **dict(zip(self.config["state_names"], self._state))})
        self._state = [np.asarray(s) for s in outputs[1:]]
        return outputs[0]

    def initial_state(self, batch_size: int) -> list[np.ndarray]:
        """Zero states for ``batch_size`` streams (the start of a video)."""
        states = []
        for shape, axis in zip(self.config["state_shapes"], self.config["state_batch_axes"]):
            shape = list(shape)
            shape[axis] = batch_size
            states.append(np.zeros(shape, dtype=np.float32))
        return states

    def reset(self) -> None:
        """Forget the temporal state (streaming graphs): the next call starts a new video."""
        self._state = None

    def _state_batch(self) -> int:
        axis = self.config["state_batch_axes"][0]
        return int(self._state[0].shape[axis])

    def close(self) -> None:
        """Release the runtime's resources."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.config.get('task')!r}, device={self.device!r})"
