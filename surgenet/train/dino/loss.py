"""The DINO loss: cross-entropy between the centred, sharpened teacher and the student.

For teacher outputs on the 2 global crops and student outputs on all crops, the loss averages
``H(softmax((t_i - c) / tau_t), softmax(s_v / tau_s))`` over every pair ``i != v``. The centre
``c`` is an exponential moving average of the teacher's mean output; it is a registered buffer,
so it travels with ``state_dict`` into checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LossOutput:
    loss: torch.Tensor
    teacher_entropy: torch.Tensor  # mean entropy of the teacher distributions (collapse monitor)
    kl: torch.Tensor  # mean KL(teacher || student) over the loss pairs (collapse monitor)


class DINOLoss(nn.Module):
    """Call with student output of all crops and teacher output of the global crops, each
    concatenated crop after crop (``(ncrops * B, K)`` and ``(n_global * B, K)``)."""

    center: torch.Tensor

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9,
                 n_global: int = 2) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.n_global = n_global
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor,
                teacher_temp: float, ncrops: int) -> LossOutput:
        student_logp = F.log_softmax(student_output.float() / self.student_temp, dim=-1).chunk(ncrops)
        teacher = teacher_output.float().detach()
        teacher_p = F.softmax((teacher - self.center) / teacher_temp, dim=-1).chunk(self.n_global)

        total = student_output.new_zeros((), dtype=torch.float32)
        kl = torch.zeros((), dtype=torch.float32, device=student_output.device)
        pairs = 0
        with torch.no_grad():
            entropies = [-(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean() for p in teacher_p]
        for i, p in enumerate(teacher_p):
            for v, logq in enumerate(student_logp):
                if v == i:
                    continue  # a crop is never compared with itself
                ce = -(p * logq).sum(dim=-1).mean()
                total = total + ce
                kl = kl + ce.detach() - entropies[i]
                pairs += 1
        self.update_center(teacher)
        return LossOutput(total / pairs, torch.stack(entropies).mean(), kl / pairs)

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """EMA of the teacher's batch mean; the mean spans all processes when torch.distributed runs."""
        batch_sum = teacher_output.sum(dim=0, keepdim=True)
        count = torch.tensor(float(teacher_output.shape[0]), device=teacher_output.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        batch_center = batch_sum / count
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))
