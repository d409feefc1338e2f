"""Full-size labels from low-resolution logits: against resizing every map and taking the argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from surgenet.argmax import bilinear_sources, upsampled_argmax


def _reference(logits: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's resize then argmax, and each pixel's margin between its two best classes."""
    full = F.interpolate(logits[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    top2 = full.topk(2, dim=0).values
    return full.argmax(dim=0), top2[0] - top2[1]


def _blobs(classes: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Smooth logits, like a trained model's: a few regions with borders between them."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, classes, max(2, h // 8), max(2, w // 8), generator=g) * 4
    smooth = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
    return smooth + 0.05 * torch.randn(classes, h, w, generator=g)


@pytest.mark.parametrize("size_in, size_out", [(64, 480), (64, 854), (256, 480), (7, 3), (5, 5), (1, 9), (10, 10)])
def test_source_indices_and_weights_reproduce_torch_resize_along_one_axis(size_in, size_out):
    # A ramp of distinct values along one axis: every output must be the two-tap blend of its sources.
    values = torch.rand(size_in, generator=torch.Generator().manual_seed(size_in * 1000 + size_out))
    expected = F.interpolate(values[None, None, :, None], size=(size_out, 1), mode="bilinear",
                             align_corners=False)[0, 0, :, 0]
    first, second, weight = bilinear_sources(size_in, size_out)
    ours = values[first] * (1 - weight) + values[second] * weight
    assert torch.allclose(ours, expected, atol=2e-5)  # a wrong source or weight is off by ~1e-2 or more
    assert first.min() >= 0 and second.max() <= size_in - 1 and (second - first).max() <= 1


@pytest.mark.parametrize("classes, low, size, seed", [
    (7, (64, 64), (480, 854), 0),     # the real-time case: a 256-model's 1/4 map to a video frame
    (3, (32, 40), (97, 203), 1),      # odd sizes, different scales per axis
    (7, (64, 64), (50, 30), 2),       # downsizing
    (2, (16, 16), (16, 16), 3),       # same size
    (300, (8, 8), (40, 40), 4),       # more than 256 classes: int32 labels
])
def test_labels_equal_the_full_resize_argmax_away_from_ties(classes, low, size, seed):
    logits = _blobs(classes, *low, seed)
    expected, margin = _reference(logits, size)
    labels = upsampled_argmax(logits, size)
    assert labels.shape == size
    assert labels.dtype == (torch.uint8 if classes <= 256 else torch.int32)
    clear = margin > 1e-4  # pixels whose two best classes float rounding could swap are not judged
    assert clear.float().mean() > 0.99
    assert torch.equal(labels.long()[clear], expected[clear])


def test_binary_model_is_foreground_where_the_resized_logit_is_positive():
    logits = _blobs(1, 24, 32, seed=5)
    full = F.interpolate(logits[None], size=(100, 130), mode="bilinear", align_corners=False)[0, 0]
    labels = upsampled_argmax(logits, (100, 130))
    clear = full.abs() > 1e-4
    assert torch.equal(labels.bool()[clear], (full > 0)[clear])
    assert 0.1 < labels.float().mean() < 0.9  # both sides present: the test judges a real border


def test_noisy_logits_take_the_full_resize_and_still_agree():
    # Salt-and-pepper output (random weights): nearly every pixel is on a border.
    logits = torch.randn(5, 20, 20, generator=torch.Generator().manual_seed(6))
    expected, margin = _reference(logits, (77, 61))
    labels = upsampled_argmax(logits, (77, 61))
    clear = margin > 1e-4
    assert torch.equal(labels.long()[clear], expected[clear])


def test_a_uniform_map_is_one_class_everywhere():
    logits = torch.zeros(4, 8, 8)
    logits[2] = 1.0
    assert torch.equal(upsampled_argmax(logits, (33, 17)), torch.full((33, 17), 2, dtype=torch.uint8))


def test_wrong_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        upsampled_argmax(torch.zeros(1, 3, 8, 8), (16, 16))


def test_predictor_segmentation_labels_match_the_full_resize(tmp_path):
    """Through the Predictor: a trained-looking model's labels equal resize-then-argmax of its logits."""
    import surgenet
    from surgenet.predict import Predictor

    torch.manual_seed(0)
    model = surgenet.load_model("surgenetxl-caformer", task="segmentation", num_classes=4, pretrained=False).eval()
    predictor = Predictor(model, device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    result = predictor.predict(image)
    with torch.inference_mode():
        logits = model(predictor.transform(image)[None]).float()[0]
    expected, margin = _reference(logits, (90, 160))
    clear = margin > 1e-4
    assert result.class_map.shape == (90, 160)
    assert np.array_equal(result.class_map[clear.numpy()], expected[clear].numpy())
