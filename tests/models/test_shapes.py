"""CVS and phase on every backbone family, at frame sizes that fit no patch grid.

(Segmentation shapes per family are in test_models_segmentation.py.) DINOv3 refuses partial
patches and DINO v1 drops them, so these sizes check that the task models pad for them.
"""

from __future__ import annotations

import pytest
import torch

import surgenet
from surgenet.exceptions import InputError
from surgenet.models import CVS_CRITERIA, CVSModel, PhaseModel, SegmentationModel

FAMILIES = ["surgenet-pvtv2", "surgenetxl-dinov1-vits16", "surgenetxl-dinov2-vits14", "surgenetxl-dinov3-vits16"]


@pytest.mark.parametrize("name", FAMILIES)
def test_cvs_and_phase_on_every_family_at_any_size(name):
    x = torch.randn(2, 3, 40, 72, generator=torch.Generator().manual_seed(0))
    cvs = surgenet.load_model(name, task="cvs", pretrained=False)
    phase = surgenet.load_model(name, task="phase", num_classes=7, pretrained=False, num_layers=2)
    with torch.no_grad():
        probs = cvs.predict_proba(x)
        logits = phase(x)
        # Padding by border replication: the embedding of x equals that of x padded by hand.
        m = cvs.size_multiple
        padded = torch.nn.functional.pad(x, (0, (-72) % m, 0, (-40) % m), mode="replicate")
        torch.testing.assert_close(cvs.embed(x), cvs.backbone.forward_embedding(padded))
    assert probs.shape == (2, 3) and torch.all((probs > 0) & (probs < 1))
    assert logits.shape == (2, 7)
    assert cvs.class_names == CVS_CRITERIA and not cvs.training and not phase.training


def test_capabilities():
    assert SegmentationModel.exportable and CVSModel.exportable and not PhaseModel.exportable
    assert PhaseModel.streaming and not SegmentationModel.streaming and not CVSModel.streaming
    assert not any(c.requires_divisible_input for c in (SegmentationModel, CVSModel, PhaseModel))


def test_cvs_any_number_of_criteria_and_names():
    model = surgenet.load_model("surgenetxl-dinov1-vits16", task="cvs", num_classes=2, pretrained=False,
                                class_names=["a", "b"], hidden_dim=16)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2)
    assert model.config["class_names"] == ["a", "b"] and model.config["head"]["hidden_dim"] == 16
    with pytest.raises(InputError, match="one name per class"):
        CVSModel("surgenetxl-dinov1-vits16", 3, ["only one"], pretrained=False)
