"""Causal temporal models over per-frame features: a multi-stage TCN (TeCNO) and an LSTM.

Both take features ``(B, T, C)`` and return phase logits ``(B, T, P)`` in which the output at
frame t depends on frames 0..t only. Both also run online: ``init_state`` then ``step`` one
frame at a time, with results equal to the offline pass frame by frame. The state is a tuple of
tensors, so a stateful step can be exported as a function ``(frame, state) -> (logits, state)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

State = tuple[torch.Tensor, ...]


class CausalDilatedResidual(nn.Module):
    """x + dropout(conv1x1(relu(causal dilated conv3(x)))), as an MS-TCN layer with left padding only."""

    def __init__(self, channels: int, dilation: int, dropout: float, kernel_size: int = 3) -> None:
        super().__init__()
        self.dilation = dilation
        self.history = (kernel_size - 1) * dilation  # past frames the dilated conv looks at
        self.conv_dilated = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)
        self.conv_1x1 = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def _residual(self, x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv_dilated(window))
        return x + self.dropout(self.conv_1x1(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        return self._residual(x, F.pad(x, (self.history, 0)))

    def step(self, x: torch.Tensor, buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame ``(B, C, 1)``; ``buffer`` holds the previous ``history`` inputs (B, C, history).

        The window [buffer, x] is exactly the receptive field of the offline conv at this frame;
        zeros in a fresh buffer play the part of the offline left padding.
        """
        window = torch.cat([buffer, x], dim=2)
        return self._residual(x, window), window[:, :, 1:]


class TCNStage(nn.Module):
    """1x1 conv in, ``num_layers`` causal residual layers with dilations 1, 2, 4, ..., 1x1 conv out."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.conv_in = nn.Conv1d(in_channels, channels, 1)
        self.layers = nn.ModuleList(CausalDilatedResidual(channels, 2 ** i, dropout) for i in range(num_layers))
        self.conv_out = nn.Conv1d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for layer in self.layers:
            x = layer(x)
        return self.conv_out(x)

    def step(self, x: torch.Tensor, buffers: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.conv_in(x)
        new = []
        for layer, buffer in zip(self.layers, buffers):
            x, buffer = layer.step(x, buffer)
            new.append(buffer)
        return self.conv_out(x), new


class CausalTCN(nn.Module):
    """Multi-stage causal TCN (TeCNO: MS-TCN with causal convolutions).

    Stage 1 reads the frame features, each later stage refines the softmax of the previous
    stage's predictions. Training uses the loss of every stage (:meth:`forward_stages`); the
    last stage is the prediction. Online, each layer keeps a FIFO of its last ``2 * dilation``
    inputs, so one frame costs one conv per layer whatever the length of the video.
    Receptive field per stage: ``2 ** (num_layers + 1) - 1`` frames (511 with 8 layers).
    """

    def __init__(self, in_channels: int, num_classes: int, num_stages: int = 2, num_layers: int = 8,
                 channels: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            TCNStage(in_channels if s == 0 else num_classes, channels, num_classes, num_layers, dropout)
            for s in range(num_stages))
        self.channels = channels

    def forward_stages(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every stage, each ``(B, T, P)``, for the multi-stage loss."""
        x = features.transpose(1, 2)
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else F.softmax(x, dim=1))
            outputs.append(x.transpose(1, 2))
        return outputs

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(features)[-1]

    def init_state(self, batch_size: int = 1, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> State:
        return tuple(torch.zeros(batch_size, self.channels, layer.history, device=device, dtype=dtype)
                     for stage in self.stages for layer in stage.layers)

    def step(self, feature: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One frame's features ``(B, C)`` -> logits ``(B, P)`` and the next state."""
        x = feature.unsqueeze(-1)
        new: list[torch.Tensor] = []
        offset = 0
        for i, stage in enumerate(self.stages):
            n = len(stage.layers)
            x, buffers = stage.step(x if i == 0 else F.softmax(x, dim=1), list(state[offset:offset + n]))
            new.extend(buffers)
            offset += n
        return x.squeeze(-1), tuple(new)


class CausalLSTM(nn.Module):
    """Unidirectional LSTM (causal by construction) and a linear classifier; state ``(h, c)``."""

    def __init__(self, in_channels: int, num_classes: int, hidden_size: int = 256, num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_channels, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward_stages(self, features: torch.Tensor) -> list[torch.Tensor]:
        return [self.forward(features)]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(features)
        return self.classifier(self.dropout(out))

    def init_state(self, batch_size: int = 1, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> State:
        shape = (self.lstm.num_layers, batch_size, self.lstm.hidden_size)
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    def step(self, feature: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        out, (h, c) = self.lstm(feature.unsqueeze(1), (state[0], state[1]))
        return self.classifier(self.dropout(out[:, 0])), (h, c)


TEMPORAL_MODELS = {"tcn": CausalTCN, "lstm": CausalLSTM}
