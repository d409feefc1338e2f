"""The web demo's functions, tested directly (the browser test is tests/app/test_browser.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the web demo needs the app extra: pip install 'surgenet[app]'")
av = pytest.importorskip("av", reason="clips need PyAV: pip install 'surgenet[video]'")

import surgenet  # noqa: E402
from surgenet.app import (LabelScores, ModelCatalog, analyse_clip, analyse_frame,  # noqa: E402
                          labels_over_time_figure, phase_timeline_figure)
from surgenet.app.analysis import legend_html, legend_rows, scores_html  # noqa: E402
from surgenet.exceptions import InputError, UnknownModelError  # noqa: E402
from surgenet.label_sets import CHOLEC80_PHASES, CHOLEC80_TOOLS, CHOLECT50_TOOLS, ENDOSCAPES_CLASSES  # noqa: E402
from surgenet.results import palette  # noqa: E402
from tests.helpers.cli import exit_code  # noqa: E402
from tests.helpers.clips import write_clip  # noqa: E402

ZOO = "surgenetxl-caformer"


@pytest.fixture(scope="module")
def catalog() -> ModelCatalog:
    torch.manual_seed(0)
    return ModelCatalog([ZOO], pretrained=False)


@pytest.fixture(scope="module")
def frame_file(tmp_path_factory) -> Path:
    """A textured 200x300 RGB frame (any aspect ratio must come back at its own size)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("frame") / "frame.png"
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(path)
    return path


def _label(catalog: ModelCatalog, task: str) -> str:
    return catalog.choices(task)[0].label


def test_legend_shares_and_colours_by_hand():
    class_map = np.array([[0, 0, 1, 1], [2, 2, 2, 2]], dtype=np.uint8)  # 2/8 background, 2/8 class 1, 4/8 class 2
    rows = legend_rows(class_map, ["bg", "a", "b", "c"])
    assert [r["class"] for r in rows] == ["bg", "a", "b", "c"]
    assert [r["share"] for r in rows] == [0.25, 0.25, 0.5, 0.0]
    r, g, b = palette(4)[2]
    assert rows[2]["colour"] == f"#{r:02x}{g:02x}{b:02x}"
    page = legend_html(rows)
    assert page.count("<tr>") == 5 and "50.0 %" in page and "&lt;" not in page
    assert "&lt;script&gt;" in legend_html([{"class": "<script>", "colour": "#000000", "share": 0.0}])


def test_catalog_offers_each_task_of_a_zoo_backbone(catalog):
    for task in ("segmentation", "cvs", "phase", "tools"):
        (choice,) = catalog.choices(task)
        assert choice.source == ZOO and not choice.trained and choice.backend == "torch-eager-fp32"
        assert choice.licence == surgenet.model_info(ZOO)["license"]


def test_frame_overlay_legend_and_cvs_match_the_models(catalog, frame_file):
    seg_label, cvs_label = _label(catalog, "segmentation"), _label(catalog, "cvs")
    result = analyse_frame(catalog, str(frame_file), seg_label, cvs_label)
    assert result.overlay.shape == (200, 300, 3) and result.overlay.dtype == np.uint8
    assert [r["class"] for r in result.legend] == list(ENDOSCAPES_CLASSES)
    assert sum(r["share"] for r in result.legend) == pytest.approx(1.0)
    assert set(result.seconds) == {seg_label, cvs_label} and all(s > 0 for s in result.seconds.values())
    assert any("untrained" in note for note in result.notes)
    # Independently: the CVS probabilities are the sigmoid of the model's logits on the transformed frame.
    model = catalog.predictor(cvs_label).model
    x = surgenet.create_transform(model)(np.asarray(Image.open(frame_file).convert("RGB")))[None]
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(x))[0].numpy()
    assert list(result.cvs) == model.class_names
    np.testing.assert_allclose(list(result.cvs.values()), expected, atol=1e-5)


def test_bad_uploads_are_messages(catalog, tmp_path):
    seg = _label(catalog, "segmentation")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        analyse_frame(catalog, str(text), seg)
    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 4000)).save(huge)  # 32 MP: refused from the header, never decoded
    with pytest.raises(InputError, match="megapixels"):
        analyse_frame(catalog, str(huge), seg)
    with pytest.raises(InputError, match="no frame"):
        analyse_frame(catalog, None, seg)
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(b"\x00\x01 definitely not a video" * 100)
    with pytest.raises(InputError, match="clip.mp4"):
        analyse_clip(catalog, broken, tmp_path, phase=_label(catalog, "phase"))
    with pytest.raises(InputError, match="segmentation model"):
        analyse_frame(catalog, _png(tmp_path), _label(catalog, "cvs"))


def _png(folder: Path) -> str:
    path = folder / "small.png"
    Image.new("RGB", (64, 48), (120, 60, 30)).save(path)
    return str(path)


def test_clip_phase_timeline_equals_the_offline_model(catalog, tmp_path):
    clip = tmp_path / "clip.mp4"
    write_clip(clip, frames=20, fps=10, size=(96, 128), seed=1)  # 2 s; analysed at 2 fps -> frames 0, 5, 10, 15
    phase, seg = _label(catalog, "phase"), _label(catalog, "segmentation")
    result = analyse_clip(catalog, clip, tmp_path, phase=phase, segmentation=seg, fps=2)
    np.testing.assert_allclose(result.times, np.arange(4) * 0.5, atol=1e-6)
    assert result.phase_names == list(CHOLEC80_PHASES)
    assert result.phase_probabilities.shape == (4, 7)
    # Independently: the offline (whole clip at once) causal model over the same decoded frames.
    model = catalog.predictor(phase).model
    transform = surgenet.create_transform(model)
    with av.open(str(clip)) as container:
        images = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i % 5 == 0]
    with torch.no_grad():
        offline = torch.softmax(model.eval()(torch.stack([transform(im) for im in images])[None])[0], -1)
    np.testing.assert_allclose(result.phase_probabilities, offline.numpy(), atol=1e-4)
    with av.open(str(result.video)) as container:
        written = list(container.decode(video=0))
    assert len(written) == 4 and (written[0].height, written[0].width) == (96, 128)
    figure = phase_timeline_figure(result)
    assert [line.get_label() for line in figure.axes[0].lines] == list(CHOLEC80_PHASES)


def test_catalog_takes_a_fine_tuned_folder_and_refuses_bad_sources(tmp_path):
    model = surgenet.load_model(ZOO, task="cvs", pretrained=False)
    model.save_pretrained(tmp_path / "my-cvs")
    catalog = ModelCatalog([str(tmp_path / "my-cvs")])
    (choice,) = catalog.choices("cvs")
    assert choice.trained and choice.task == "cvs" and catalog.choices("segmentation") == []
    with pytest.raises(InputError, match="neither config.json"):
        ModelCatalog([str(tmp_path)])
    with pytest.raises(UnknownModelError, match="surgenetxl-caformer"):
        ModelCatalog(["surgenetxl-cafomer"])
    with pytest.raises(InputError, match="at least one model"):
        ModelCatalog([])


def test_catalog_threshold_reaches_every_predictor_and_decides(tmp_path, frame_file):
    model = surgenet.load_model(ZOO, task="cvs", pretrained=False)
    model.save_pretrained(tmp_path / "my-cvs")
    x = _tensor(model, np.asarray(Image.open(frame_file).convert("RGB")))[None]
    with torch.no_grad():
        probs = torch.sigmoid(model.eval()(x))[0].numpy()
    threshold = float(np.sort(probs)[1])  # between the values: some criteria met, some not
    catalog = ModelCatalog([str(tmp_path / "my-cvs"), ZOO], pretrained=False, threshold=threshold)
    assert {catalog.predictor(c.label).threshold for t in ("cvs", "tools") for c in catalog.choices(t)} == {threshold}
    seg, cvs = catalog.choices("segmentation")[0].label, catalog.choices("cvs")[0].label
    scores = analyse_frame(catalog, str(frame_file), seg, [cvs]).scores["cvs"]
    assert scores.threshold == threshold
    assert scores.positive == [n for n, p in zip(model.class_names, probs) if p >= threshold]
    assert 0 < len(scores.positive) < len(probs)
    with pytest.raises(InputError, match="between 0 and 1"):
        ModelCatalog([ZOO], pretrained=False, threshold=1.5)


def test_cli_user_mistakes_end_in_one_line(capsys):
    for argv, message in ((["app", "--port", "0"], "not a TCP port"),
                          (["app", "--threshold", "1.2", "--no-pretrained"], "between 0 and 1"),
                          (["app", "--model", "./no/such/folder", "--no-pretrained"], "no folder")):
        assert exit_code(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_scores_table_decides_at_the_threshold_by_hand():
    scores = LabelScores("tools", {"Grasper": 0.8, "Hook": 0.5, "<b>": 0.2}, threshold=0.5)
    assert scores.positive == ["Grasper", "Hook"]  # 0.5 reaches the threshold, 0.2 does not
    page = scores_html(scores)
    assert page.count("present") == 2 and page.count("absent") == 1
    assert "80.0 %" in page and "&lt;b&gt;" in page and "<b>" not in page
    cvs_page = scores_html(LabelScores("cvs", {"C1": 0.7, "C2": 0.1}, threshold=0.6))
    assert cvs_page.count("not met") == 1 and cvs_page.count("met") == 2 and "at 0.6" in cvs_page


def _tensor(model, image: np.ndarray) -> torch.Tensor:
    return surgenet.create_transform(model)(image)


def test_frame_tools_probabilities_are_the_models_sigmoid(catalog, frame_file):
    seg, cvs, tools = (_label(catalog, t) for t in ("segmentation", "cvs", "tools"))
    catalog.predictor(tools).threshold = 0.45  # the predictor's threshold decides presence, not a fixed 0.5
    try:
        result = analyse_frame(catalog, str(frame_file), seg, [cvs, tools])
    finally:
        catalog.predictor(tools).threshold = 0.5
    assert set(result.scores) == {"cvs", "tools"} and set(result.seconds) == {seg, cvs, tools}
    model = catalog.predictor(tools).model
    x = _tensor(model, np.asarray(Image.open(frame_file).convert("RGB")))[None]
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(x))[0].numpy()
    assert list(result.tools) == model.class_names == list(CHOLEC80_TOOLS)
    np.testing.assert_allclose(list(result.tools.values()), expected, atol=1e-5)
    scores = result.scores["tools"]
    assert scores.threshold == 0.45
    assert scores.positive == [n for n, p in zip(CHOLEC80_TOOLS, expected) if p >= 0.45]
    with pytest.raises(InputError, match="at most one model per task"):
        analyse_frame(catalog, str(frame_file), seg, [tools, tools])
    with pytest.raises(InputError, match="is a phase model"):
        analyse_frame(catalog, str(frame_file), seg, [_label(catalog, "phase")])


def test_clip_tools_over_time_equal_the_model_per_frame(catalog, tmp_path):
    clip = tmp_path / "clip.mp4"
    write_clip(clip, frames=20, fps=10, size=(96, 128), seed=2)  # analysed at 2 fps -> frames 0, 5, 10, 15
    tools = _label(catalog, "tools")
    result = analyse_clip(catalog, clip, tmp_path, multi_label=tools, fps=2)
    assert result.video is None and result.phase_names == [] and result.label_task == "tools"
    np.testing.assert_allclose(result.times, np.arange(4) * 0.5, atol=1e-6)
    assert result.label_names == list(CHOLEC80_TOOLS) and result.label_probabilities.shape == (4, 7)
    model = catalog.predictor(tools).model
    with av.open(str(clip)) as container:
        images = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i % 5 == 0]
    with torch.no_grad():  # each frame on its own, independently of the app's batching
        expected = np.stack([torch.sigmoid(model.eval()(_tensor(model, im)[None]))[0].numpy() for im in images])
    np.testing.assert_allclose(result.label_probabilities, expected, atol=1e-5)
    figure = labels_over_time_figure(result)
    assert [line.get_label() for line in figure.axes[0].lines][:7] == list(CHOLEC80_TOOLS)
    present_bars = sum(len(c.get_paths()) for c in figure.axes[1].collections)
    assert present_bars == int((expected >= 0.5).sum())
    with pytest.raises(InputError, match="is a segmentation model"):
        analyse_clip(catalog, clip, tmp_path, multi_label=_label(catalog, "segmentation"))


def test_catalog_takes_tools_folders_and_names_tasks_it_does_not_show(tmp_path):
    model = surgenet.load_model(ZOO, task="tools", num_classes=len(CHOLECT50_TOOLS),
                                class_names=list(CHOLECT50_TOOLS), pretrained=False)
    model.save_pretrained(tmp_path / "my-tools")
    export = tmp_path / "tools-export"  # listed from its sidecar; nothing is loaded until it is chosen
    export.mkdir()
    (export / "model.onnx").write_bytes(b"")
    (export / "model.onnx.json").write_text('{"task": "tools", "backbone": "surgenetxl-caformer"}')
    catalog = ModelCatalog([str(tmp_path / "my-tools"), str(export)], pretrained=False)
    menu = catalog.choices("tools")
    assert [(c.source, c.backend, c.trained) for c in menu] == [  # the export's backend: auto, chosen at warm-up
        (str(tmp_path / "my-tools"), "torch-eager-fp32", True), (str(export), "auto", True)]
    assert menu[1].label == "tools-export (tools, auto)"
    assert menu[1].licence == surgenet.model_info(ZOO)["license"] and catalog.choices("segmentation") == []
    answer = LabelScores.of("tools", catalog.predictor(menu[0].label).predict(np.zeros((48, 64, 3), np.uint8)))
    assert list(answer.probabilities) == list(CHOLECT50_TOOLS)  # the tool names are the saved model's class_names
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text('{"task": "detection"}')
    with pytest.raises(InputError, match="task 'detection' is not one the app shows") as info:
        ModelCatalog([str(odd)])
    assert len(str(info.value).splitlines()) == 1 and "tools" in str(info.value)


def test_uploads_above_the_limit_are_refused_before_decoding(catalog, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * 4096)  # not even an image: the size is checked first
    with pytest.raises(InputError, match="uploads up to"):
        analyse_frame(catalog, str(big), _label(catalog, "segmentation"), max_bytes=1024)
    clip = tmp_path / "big.mp4"
    clip.write_bytes(b"\0" * 4096)
    with pytest.raises(InputError, match="uploads up to"):
        analyse_clip(catalog, clip, tmp_path, segmentation=_label(catalog, "segmentation"), max_bytes=1024)


def test_app_host_and_size_options():
    import argparse

    from surgenet.cli.app import is_local, upload_bytes

    assert is_local("127.0.0.1") and is_local("::1") and is_local("localhost")
    assert not is_local("0.0.0.0") and not is_local("192.168.1.5") and not is_local("example.org")
    assert upload_bytes("20mb") == 20 * 1024 ** 2 and upload_bytes("512") == 512 and upload_bytes("1.5kb") == 1536
    for bad in ("lots", "-1mb", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            upload_bytes(bad)


def test_an_export_folder_runs_the_backend_auto_chose_at_warm_up_and_the_label_names_it(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="an export folder runs with the export extra")
    from surgenet.app.ui import _model_facts
    from surgenet.runtime import auto
    from tests.helpers.exports import write_tiny_export

    folder = write_tiny_export(tmp_path / "seg-export")
    monkeypatch.setenv("SURGENET_CACHE", str(tmp_path / "cache"))
    calls, seen = [], []
    real = auto.select_backend
    monkeypatch.setattr(auto, "select_backend", lambda *a, **k: calls.append(k) or real(*a, **k))
    catalog = ModelCatalog([str(folder)], on_choice=seen.append)
    assert [c.label for c in catalog.choices("segmentation")] == ["seg-export (segmentation, auto)"]
    catalog.warm_up()
    (choice,) = catalog.choices("segmentation")
    assert len(calls) == 1 and calls[0]["device"] == "cpu" and len(seen) == 1  # once, at warm-up
    assert choice.backend == seen[0].backend and choice.label == f"seg-export (segmentation, auto → {choice.backend})"
    assert catalog.get("seg-export (segmentation, auto)") == choice  # the label before the choice still finds it
    facts = _model_facts(catalog, [choice.label])
    assert f"segmentation, {choice.backend}, fine-tuned" in facts and f"backend auto -> {choice.backend} (" in facts
    frame = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert catalog.predictor(choice.label).predict(frame).class_map.shape == (40, 48)
    assert len(calls) == 1  # a request does not choose again

    named = ModelCatalog([str(folder)], backend="onnxruntime")  # --backend overrides auto; nothing is measured
    named.warm_up()
    assert [(c.label, c.backend) for c in named.choices("segmentation")] == [
        ("seg-export (segmentation, onnxruntime-cpu)", "onnxruntime-cpu")] and len(calls) == 1
    for bad, message in (("torch-compile-fp32", "runs a PyTorch model; the app's --backend picks"),
                         ("openvino-int8", "model.int8.xml, which is not there")):
        with pytest.raises(InputError, match=message):
            ModelCatalog([str(folder)], backend=bad)
    with pytest.raises(InputError, match="no --model is one"):
        ModelCatalog([ZOO], pretrained=False, backend="onnxruntime-cpu")
    assert exit_code(["app", "--model", str(folder), "--backend", "no-such-backend"]) == 2
