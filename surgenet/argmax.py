"""Class labels at a frame's own size from a model's low-resolution logits, without the full cost.

The Predictor's answer for a segmentation frame is the argmax over classes of the logits resized
bilinearly (``align_corners=False``) to the frame. Resizing every class map to 854x480 and taking
the argmax is most of a video frame's postprocessing time, yet almost every output pixel needs
neither: a bilinear value is a convex combination of four source pixels, so where those four agree
on their best class ``c`` (``l_c`` beats every other logit at each of them), ``c`` also beats
every other class in the combination. Only pixels whose four sources disagree, the borders
between regions, are interpolated and compared; the labels are those of the full computation
(exact ties aside, where float rounding decides either way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Above this share of output pixels on a border, interpolating them one by one costs more than
# resizing the whole maps (a random-weight model's salt-and-pepper output, not a trained one's).
_FULL_RESIZE_ABOVE = 0.25


def argmax_classes(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(dim=0)`` for (C, ...) scores (the first class on ties), as uint8 when C <= 256.

    A running maximum over the classes: torch's argmax over the leading (strided) dimension takes
    ~40 ms for 7 classes at 854x480 on one CPU core, this ~5 ms, which matters at 25 fps.
    NaN scores (a broken model) are not given the NaN class as torch's argmax would.
    """
    best = scores[0].clone()
    labels = torch.zeros(scores.shape[1:], dtype=torch.uint8 if scores.shape[0] <= 256 else torch.int32,
                         device=scores.device)
    for c in range(1, scores.shape[0]):
        labels.masked_fill_(scores[c] > best, c)
        torch.maximum(best, scores[c], out=best)
    return labels


def bilinear_sources(size_in: int, size_out: int, device: torch.device | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each output index along one axis: the two source indices and the second one's weight.

    PyTorch's rule for ``align_corners=False``: source = (out + 0.5) * in / out - 0.5, clamped at 0;
    the pair is (floor, floor + 1), both clamped to the last index. In float32 with one fused
    multiply-add, as its CPU kernel is compiled, so that the weights are bit for bit its own.
    """
    scale = torch.tensor(float(size_in), dtype=torch.float32) / size_out
    centres = torch.arange(size_out, dtype=torch.float32) + 0.5
    source = torch.addcmul(torch.tensor(-0.5), centres, scale.expand(size_out)).clamp_min(0.0)
    first = source.floor().long().clamp_max(size_in - 1)
    second = (first + 1).clamp_max(size_in - 1)
    weight = (source - first).clamp(0.0, 1.0)
    return first.to(device), second.to(device), weight.to(device)


def upsampled_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Labels ``(H, W)`` of ``logits`` ``(C, h, w)`` resized bilinearly to ``size``, argmax over classes.

    Equal to ``argmax_classes(F.interpolate(logits[None], size, mode="bilinear")[0])``; one logit
    (a binary model) means foreground where the resized logit is > 0. uint8 when C <= 256.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (C, h, w), got shape {tuple(logits.shape)}.")
    scores = logits.float()
    if scores.shape[0] == 1:  # (0, l): the first maximum is 1 exactly where l > 0
        scores = torch.cat([torch.zeros_like(scores), scores])
    height, width = (int(v) for v in size)
    low = argmax_classes(scores)
    rows0, rows1, row_weight = bilinear_sources(scores.shape[1], height, scores.device)
    cols0, cols1, col_weight = bilinear_sources(scores.shape[2], width, scores.device)
    # A source cell (i, j), (i+1, j), (i, j+1), (i+1, j+1), repeated at the far edges as the clamp does.
    padded = torch.cat([low, low[-1:]], dim=0)
    padded = torch.cat([padded, padded[:, -1:]], dim=1)
    corner = padded[:-1, :-1]
    agree = (corner == padded[1:, :-1]) & (corner == padded[:-1, 1:]) & (corner == padded[1:, 1:])
    # One gather to the output grid carries both the cell's label and whether it is a border.
    border_bit = 1 << (8 if low.dtype == torch.uint8 else 24)
    code = low.to(torch.int32) | ((~agree).to(torch.int32) * border_bit)
    code = code.index_select(0, rows0).index_select(1, cols0)
    ys, xs = (code >= border_bit).nonzero(as_tuple=True)
    if ys.numel() > _FULL_RESIZE_ABOVE * height * width:
        full = F.interpolate(scores[None], size=(height, width), mode="bilinear", align_corners=False)[0]
        return argmax_classes(full)
    labels = (code & (border_bit - 1)).to(low.dtype)
    if ys.numel():
        flat = scores.reshape(scores.shape[0], -1)
        r0, r1, wy = rows0[ys] * scores.shape[2], rows1[ys] * scores.shape[2], row_weight[ys]
        c0, c1, wx = cols0[xs], cols1[xs], col_weight[xs]
        top = flat.index_select(1, r0 + c0) * (1 - wx) + flat.index_select(1, r0 + c1) * wx
        bottom = flat.index_select(1, r1 + c0) * (1 - wx) + flat.index_select(1, r1 + c1) * wx
        labels[ys, xs] = argmax_classes(top * (1 - wy) + bottom * wy)
    return labels
