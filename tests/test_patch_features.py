"""The PCA picture of patch features (surgenet.visualize), `surgenet features`, and the demo's
weights step (download path against a Hugging Face cache built here, offline path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import surgenet
from surgenet.cli import main as surgenet_main
from surgenet.exceptions import InputError
from surgenet.patch_features import load_feature_extractor
from surgenet.samples import endoscapes_frame, endoscapes_frames, endoscapes_mask
from surgenet.visualize import feature_pca, pca_rgb, side_by_side
from tests.helpers.released import teacher_file
from tests.reference import randomize_
from tests.reference.metaformer_ref import SurgeNetCAFormerRef
from tests.helpers.scripts import load_script



def _two_regions(h: int = 12, w: int = 20, split: int = 5, channels: int = 16, seed: int = 0) -> torch.Tensor:
    """Features of a frame made of two flat regions: columns < split hold vector a, the rest b."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(channels, generator=g), torch.randn(channels, generator=g)
    feats = b[:, None, None].repeat(1, h, w)
    feats[:, :, :split] = a[:, None, None]
    return feats


# ----------------------------------------------------------------------------- the PCA picture
def test_two_flat_regions_get_two_uniform_and_distinct_colours():
    rgb = pca_rgb(_two_regions())
    left, right = rgb[:, :5].reshape(-1, 3), rgb[:, 5:].reshape(-1, 3)
    # Hand-worked: two points have one principal axis; its projections are two values, which the
    # robust scaling maps to 0 and 1 (the smaller group, farther from the mean, on the high side);
    # the other two components have no variance and are drawn mid-grey.
    np.testing.assert_allclose(left, np.tile([1.0, 0.5, 0.5], (len(left), 1)), atol=1e-6)
    np.testing.assert_allclose(right, np.tile([0.0, 0.5, 0.5], (len(right), 1)), atol=1e-6)


def test_the_picture_does_not_depend_on_the_channel_basis_or_scale():
    feats = _two_regions(split=13)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(3)))
    turned = torch.einsum("dc,chw->dhw", rotation, feats) * 7.5 + 3.0
    np.testing.assert_allclose(pca_rgb(turned), pca_rgb(feats), atol=1e-5)
    assert pca_rgb(feats)[0, 0, 0] == pytest.approx(0.0) and pca_rgb(feats)[0, -1, 0] == pytest.approx(1.0)


def test_small_noise_keeps_the_regions_apart_on_the_first_component():
    feats = _two_regions(split=8) + 0.01 * torch.randn(16, 12, 20, generator=torch.Generator().manual_seed(1))
    red = pca_rgb(feats)[..., 0]
    assert red[:, :8].min() > 0.8 and red[:, 8:].max() < 0.2
    assert red[:, :8].std() < 0.1 and red[:, 8:].std() < 0.1


def test_outlier_patches_do_not_wash_out_the_rest():
    # 238 patches in two groups 1 apart, two patches 100 away: min-max scaling would squeeze both
    # groups into one grey; the 1st/99th percentiles keep them at opposite ends.
    feats = torch.zeros(4, 12, 20)
    feats[0, :, 10:] = 1.0
    feats[0, 0, 0], feats[0, 11, 19] = 100.0, -100.0
    red = pca_rgb(feats)[..., 0]
    body = np.ones((12, 20), bool)
    body[0, 0] = body[11, 19] = False
    left, right = red[:, :10][body[:, :10]], red[:, 10:][body[:, 10:]]
    assert abs(left.mean() - right.mean()) > 0.9


def test_foreground_threshold_blackens_the_rest_as_dinov2():
    rgb = pca_rgb(_two_regions(split=4), foreground=0.5)
    np.testing.assert_allclose(rgb[:, 4:], 0.0)  # background: black
    np.testing.assert_allclose(rgb[:, :4], 0.5, atol=1e-6)  # foreground alone: one flat region, mid-grey


@pytest.mark.parametrize("bad,kwargs", [
    (torch.zeros(3, 4), {}),
    (torch.full((4, 3, 3), float("nan")), {}),
    (torch.zeros(4, 3, 3), {"foreground": 1.5}),
])
def test_bad_features_or_threshold_are_input_errors(bad, kwargs):
    with pytest.raises(InputError):
        pca_rgb(bad, **kwargs)


def test_a_flat_frame_gives_a_grey_picture_not_noise():
    np.testing.assert_allclose(pca_rgb(torch.ones(8, 5, 7)), 0.5)


# ----------------------------------------------------------------------------- on real backbones
# The input sizing is what this module adds to the backbones (whose features every family test
# of test_backbone_shapes checks): multiples of 32 for the CNNs (the CAFormer in the CLI and demo
# tests, the ConvNeXtV2 below), of the patch for ViTs: 14 here, with DINOv2's register tokens.
@pytest.mark.parametrize("name", ["surgenetxl-dinov2-vits14"])
def test_a_vit_gives_a_picture_at_the_frame_size(name):
    torch.manual_seed(0)
    extractor = load_feature_extractor(name, pretrained=False)
    frame = (np.random.default_rng(0).random((50, 90, 3)) * 255).astype(np.uint8)
    feats = extractor(frame, short_side=32)
    h_in, w_in = extractor.input_size(50, 90, 32)
    assert feats.shape[-2:] == (h_in // extractor.stride, w_in // extractor.stride)
    picture = feature_pca(extractor, frame, short_side=32)
    assert picture.shape == (50, 90, 3) and picture.dtype == np.uint8
    assert picture.reshape(-1, 3).std(axis=0).max() > 10  # a random frame is not one colour


def test_a_real_backbone_separates_two_flat_regions():
    # ConvNeXt stage 1 is convolutions only: inside a flat region its features are constant, so
    # the regions' interiors (away from the border and the boundary) must be two flat colours.
    torch.manual_seed(0)
    extractor = load_feature_extractor("surgenet-convnextv2", layer=1, pretrained=False)
    frame = np.zeros((256, 512, 3), np.uint8)
    frame[:, :256] = (200, 60, 50)
    frame[:, 256:] = (230, 200, 110)
    picture = feature_pca(extractor, frame, short_side=256).astype(float)
    left, right = picture[64:192, 64:192].reshape(-1, 3), picture[64:192, 320:448].reshape(-1, 3)
    assert left.std(axis=0).max() < 3 and right.std(axis=0).max() < 3
    assert np.abs(left.mean(axis=0) - right.mean(axis=0)).max() > 100


def test_saved_task_model_and_training_export_give_the_pictures_of_their_weights(tmp_path):
    from surgenet.train.teacher_export import export_teacher

    frame = np.asarray(Image.open(endoscapes_frame()).convert("RGB"))
    model = surgenet.load_model("surgenetxl-caformer", task="segmentation", num_classes=2, pretrained=False)
    model.train()
    expected = feature_pca(model, frame, short_side=64)
    assert model.training and model.backbone.model.training  # the user's model is left in its mode
    model.save_pretrained(tmp_path / "best")
    export_teacher(model.backbone.model, "surgenetxl-caformer", tmp_path / "run" / "teacher")
    np.testing.assert_array_equal(feature_pca(tmp_path / "best", frame, short_side=64), expected)
    np.testing.assert_array_equal(feature_pca(tmp_path / "run", frame, short_side=64), expected)


def test_side_by_side_puts_the_frame_beside_the_picture():
    frame = np.full((40, 60, 3), 200, np.uint8)
    picture = np.zeros((40, 60, 3), np.uint8)
    fig = side_by_side([("frame", frame), ("pca", picture)], gap=4)
    assert fig.shape[1] == 124 and fig.shape[0] > 40
    assert (fig[-1, :60] == 200).all() and (fig[-1, 64:] == 0).all()


def test_shipped_real_frames_have_their_masks():
    frames = endoscapes_frames()
    assert 2 <= len(frames) <= 4
    for frame in frames:
        image = Image.open(frame)
        mask = np.asarray(Image.open(endoscapes_mask(frame.stem)))
        assert image.size == (854, 480) and mask.shape == (480, 854)
        assert set(np.unique(mask)) <= {0, 1, 2, 3, 4, 5, 6, 255}
        assert frame.stat().st_size < 110_000
    assert "CC BY-NC-SA 4.0" in (frames[0].parents[1] / "README.md").read_text()


# ----------------------------------------------------------------------------- the CLI
def test_cli_writes_a_png_of_the_frames_size(tmp_path, capsys):
    rc = surgenet_main(["features", str(endoscapes_frame()), "--model", "surgenetxl-caformer", "--no-pretrained",
                        "--size", "64", "--out", str(tmp_path / "pca.png"), "--figure", str(tmp_path / "fig.png")])
    assert rc == 0
    assert Image.open(tmp_path / "pca.png").size == (854, 480)
    assert Image.open(tmp_path / "fig.png").size[0] > 2 * 854
    assert "meaningless" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["not-an-image", "unknown-model", "not-png", "bad-layer", "offline-no-cache"])
def test_cli_user_mistakes_are_one_line_and_exit_2(tmp_path, capsys, case):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    frame, model, out, extra = str(endoscapes_frame()), "surgenetxl-caformer", str(tmp_path / "o.png"), []
    if case == "not-an-image":
        frame = str(text)
    elif case == "unknown-model":
        model = "surgenetxl-cafromer"
    elif case == "not-png":
        out = str(tmp_path / "o.jpg")
    elif case == "bad-layer":
        extra = ["--layer", "4"]
    args = ["features", frame, "--model", model, "--out", out, *extra]
    if case != "offline-no-cache":
        args.append("--no-pretrained")
    assert surgenet_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("surgenet: error:")
    assert not Path(out).exists()


# ----------------------------------------------------------------------------- the demo's weights step
def _demo():
    return load_script("examples/demo.py")


def test_demo_offline_says_so_in_one_line_and_uses_random_weights(tmp_path, capsys, hf_cache):
    demo = _demo()
    assert demo.main(["--steps", "features", "--vit", "none", "--feature-size", "64", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    notice = [line for line in lines if "not downloading" in line]
    assert len(notice) == 1 and "HF_HUB_OFFLINE=1" in notice[0]
    assert any("surgenetxl-caformer: not in the Hugging Face cache: RANDOM weights" in line for line in lines)
    assert any("mean nothing" in line for line in lines)
    assert Image.open(tmp_path / "features.png").size[1] > demo.FIGURE_HEIGHT  # frame | CAFormer, under titles
    assert Image.open(tmp_path / "features_surgenetxl-caformer.png").size == (854, 480)


def test_demo_downloads_the_released_weights_and_shows_their_features(tmp_path, capsys, hf_cache, monkeypatch):
    demo = _demo()
    info = surgenet.model_info("surgenetxl-caformer")
    ref = randomize_(SurgeNetCAFormerRef(), seed=5)
    path = hf_cache.add(info["repo_id"], info["filename"], teacher_file(ref.state_dict(), 512))
    monkeypatch.setattr(demo, "hub_unreachable", lambda timeout: None)  # "the Hub answers": hf_hub_download runs
    assert demo.main(["--steps", "features", "--vit", "none", "--feature-size", "64", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "surgenetxl-caformer: released weights from the Hugging Face Hub" in out
    assert "CC BY-NC-SA 4.0" in out and "RANDOM" not in out and "not downloading" not in out
    shown = np.asarray(Image.open(tmp_path / "features_surgenetxl-caformer.png"))
    frame = np.asarray(Image.open(endoscapes_frame()).convert("RGB"))
    np.testing.assert_array_equal(shown, feature_pca("surgenetxl-caformer", frame, short_side=64, weights=path))
