"""One post-processing for every path: a binary (one-logit) segmentation model labels two classes
in the Predictor and in batch jobs alike, and its class shares count the foreground."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import surgenet
from surgenet.batch.spec import BatchModel, ModelSpec
from surgenet.postprocess import class_shares, label_count, label_names, segmentation_labels


def test_a_binary_logit_map_is_foreground_where_positive():
    logits = torch.tensor([[[2.0, -1.0], [-3.0, 0.5]]])  # (1, 2, 2)
    labels = segmentation_labels(logits, (2, 2))
    np.testing.assert_array_equal(labels, [[1, 0], [0, 1]])
    np.testing.assert_allclose(class_shares(labels, 1), [0.5, 0.5])  # background and foreground
    assert label_count(1) == 2 and label_count(7) == 7
    assert label_names(["instrument"], 1) == ["background", "instrument"]
    assert label_names(["a", "b", "c"], 3) == ["a", "b", "c"]


def test_shares_by_hand_for_a_multi_class_map():
    labels = np.array([[0, 2, 2], [2, 1, 0]], dtype=np.uint8)
    np.testing.assert_allclose(class_shares(labels, 4), [2 / 6, 1 / 6, 3 / 6, 0])


@pytest.mark.parametrize("num_classes", [1, 3])
def test_batch_and_predictor_give_the_same_labels_and_shares(num_classes):
    spec = ModelSpec("surgenet-caformer", "segmentation", num_classes=num_classes, pretrained=False)
    batch_model = BatchModel(spec)
    model = spec.build()
    if num_classes == 1:  # a binary head with both answers present: bias at the logits' median
        with torch.no_grad():
            x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
            last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            last.bias -= model(x).median()
            batch_model.model.load_state_dict(model.state_dict())
    image = (np.random.default_rng(2).random((48, 80, 3)) * 255).astype(np.uint8)
    predictor = surgenet.Predictor(model)
    result = predictor.predict(image)
    pixels = predictor.transform(image).numpy()
    out = batch_model({"pixels": pixels[None], "height": np.array([48]), "width": np.array([80]),
                       "marker": np.array([False])})
    shares = out["values"][0]
    assert shares.shape == (max(2, num_classes),) and shares.sum() == pytest.approx(1.0)
    expected = np.bincount(result.class_map.ravel(), minlength=len(shares)) / result.class_map.size
    np.testing.assert_allclose(shares, expected, atol=1e-6)
    if num_classes == 1:
        assert 0 < shares[1] < 1 and result.class_names[0] == "background"
