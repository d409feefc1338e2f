"""surgenet.runtime: the one registry of backends, the one way to open a runner, and the layering
(the core never imports the export tools)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import surgenet
from surgenet.cli import main
from surgenet.exceptions import InputError
from surgenet.runtime import registry
from surgenet.runtime.errors import BackendUnavailableError

ROOT = Path(__file__).resolve().parents[2]
SIZE = (32, 32)


def test_nothing_in_the_core_imports_the_export_tools():
    offenders = []
    for path in sorted((ROOT / "surgenet").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names
                          if n == "surgenet_export" or n.startswith("surgenet_export.")]
        text = path.read_text(encoding="utf-8")  # importlib.import_module("surgenet_export...") too
        if "import_module(\"surgenet_export" in text or "import_module('surgenet_export" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    assert len(list((ROOT / "surgenet").rglob("*.py"))) > 50  # the scan saw the package


def test_registry_names_aliases_and_fields():
    names = registry.backend_names()
    assert len(names) == len(set(names)) and registry.REFERENCE == names[0] == "torch-eager-fp32"
    # the older command-line names resolve to one backend each
    old = {"torch": "torch-eager-fp32", "pytorch": "torch-eager-fp32", "onnxruntime": "onnxruntime-cpu",
           "openvino": "openvino-f32", "openvino-bf16": "openvino-bf16", "openvino-int8": "openvino-int8",
           "openvino-int8-bf16": "openvino-int8-bf16", "tensorrt": "tensorrt", "tensorrt-fp16": "tensorrt"}
    assert {k: registry.get_backend(k).name for k in old} == old
    for b in registry.BACKENDS.values():
        assert b.description and b.runtime in registry.RUNTIMES and b.device in ("cpu", "cuda")
        assert (b.device == "cuda") == ("cuda" in b.needs)  # a GPU backend says it needs CUDA, and only those
        assert (b.file is None) == (b.artefact == "model") and (b.runtime == "torch") == (b.artefact == "model")
    graphs = [b for b in registry.BACKENDS.values() if b.options.get("cuda_graphs")]
    assert {(b.precision, b.device) for b in graphs} == {("fp16", "cuda"), ("bf16", "cuda")}
    with pytest.raises(InputError, match="unknown backend 'fastest'.*torch-eager-fp32"):
        registry.get_backend("fastest")
    with pytest.raises(ValueError):
        registry.Backend("x", "jax", "fp32", "cpu", "model", (), "no such runtime")


def test_every_backend_name_the_benchmark_prints_is_one_predict_takes():
    from tests.helpers.scripts import load_script

    BENCHMARK = load_script("benchmarks/latency.py").BACKENDS

    from surgenet.cli import build_parser

    for name in BENCHMARK:
        args = build_parser().parse_args(["predict", str(ROOT), "--model", "surgenet-caformer", "--out", str(ROOT / "o"),
                                          "--backend", name])
        assert registry.get_backend(args.backend).name == name


def test_unavailable_reasons_name_what_is_missing(monkeypatch):
    import surgenet.runtime.cpu as devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert registry.unavailable_reason("torch-eager-fp32") is None
    assert "needs an NVIDIA GPU with CUDA" in registry.unavailable_reason("torch-cuda-graphs-fp16")
    assert "no native bf16" in registry.unavailable_reason("openvino-bf16")
    assert "AVX512-FP16" in registry.unavailable_reason("openvino-f16")
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert registry.unavailable_reason("torch-bf16-autocast") is None  # AVX512-BF16 now
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda name: None)
    assert "pip install 'surgenet[trt]'" in registry.unavailable_reason(registry.Backend(
        "t", "tensorrt", "fp16", "cpu", "tensorrt-engine", ("package:tensorrt",), "test"))
    with pytest.raises(BackendUnavailableError, match="needs an NVIDIA GPU"):
        registry.open_runner("torch-cuda-graphs-bf16", torch.nn.Identity())


@pytest.fixture(scope="module")
def seg_model():
    torch.manual_seed(0)
    return surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=3, pretrained=False,
                               input_size=SIZE).eval()


def test_open_runner_of_a_pytorch_backend_matches_the_model(seg_model):
    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = seg_model(x).numpy()
    runner = registry.open_runner("torch-channels-last-fp32", seg_model)
    np.testing.assert_allclose(runner(x.numpy()), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="runs on cpu, not on cuda"):
        registry.open_runner("torch-eager-fp32", seg_model, device="cuda")


def test_cuda_graphs_wiring_on_cpu_with_a_stand_in_for_the_compiler(seg_model, monkeypatch):
    """What can be checked without a GPU: torch.compile is asked for reduce-overhead with static
    shapes, the weights are cast once, each new input shape is warmed up once, and the result is the
    FP32 model's within bf16 rounding."""
    from surgenet.runtime import torch_runner

    compiled, calls, steps = [], [], []

    def fake_compile(module, **kwargs):
        compiled.append(kwargs)

        def forward(*args):
            calls.append(tuple(args[0].shape))
            return module(*args)
        return forward

    monkeypatch.setattr(torch_runner, "_check_graph_device", lambda device: None)
    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    runner = torch_runner.TorchRunner(seg_model, device="cpu", precision="bf16", cuda_graphs=True, warmup=2)
    assert compiled == [{"mode": "reduce-overhead", "dynamic": False}]
    assert runner.backend == "torch-bf16-cuda-graphs"
    assert {p.dtype for p in runner._module.parameters()} == {torch.bfloat16}
    assert next(seg_model.parameters()).dtype == torch.float32  # the caller's model is untouched
    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = seg_model(x).numpy()
    out = runner(x.numpy())
    assert calls == [(1, 3, *SIZE)] * 3 and out.dtype == np.float32  # 2 warm-up runs, then the one used
    runner(x.numpy())
    assert len(calls) == 4 and len(steps) == 4  # the shape is warm: one run, one step mark each
    runner(np.concatenate([x.numpy()] * 2))
    assert calls[4:] == [(2, 3, *SIZE)] * 3  # a new batch is a new graph, warmed up again
    assert float(np.abs(out - expected).max()) < 0.1 * float(np.abs(expected).max()) + 0.05
    assert float(np.mean(out.argmax(1) == expected.argmax(1))) > 0.8


def test_cuda_graphs_runner_refuses_a_machine_without_cuda(seg_model, monkeypatch):
    from surgenet.runtime.torch_runner import TorchRunner

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match="CUDA graphs need an NVIDIA GPU"):
        TorchRunner(seg_model, device="cpu", precision="bf16", cuda_graphs=True)


def test_predict_with_a_cuda_backend_and_no_cuda_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    import surgenet.models as models
    from PIL import Image

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("checked before the model is built"))
    image = tmp_path / "frame.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    code = main(["predict", str(image), "--model", "surgenet-caformer", "--task", "segmentation", "--num-classes",
                 "3", "--no-pretrained", "--backend", "torch-cuda-graphs-fp16", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs an NVIDIA GPU with CUDA" in err[0], err


def test_predict_runs_the_benchmarks_fastest_cpu_backend_by_its_name(seg_model, tmp_path, capsys):
    """openvino-bf16, the fastest row of the CPU latency table, passed to predict under that name."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    if registry.unavailable_reason("openvino-bf16"):
        pytest.skip(registry.unavailable_reason("openvino-bf16"))
    from PIL import Image
    from surgenet_export import export_onnx

    folder = tmp_path / "export"
    export_onnx(seg_model, folder / "model.onnx", imgsz=SIZE, simplify=False)
    image = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image)
    outs = {}
    for backend in ("openvino-bf16", "torch-eager-fp32"):
        model = str(folder) if backend != "torch-eager-fp32" else str(seg_model.save_pretrained(tmp_path / "saved"))
        out = tmp_path / backend
        assert main(["predict", str(image), "--model", model, "--backend", backend, "--out", str(out),
                     "--no-overlay"] + (["--device", "cpu"] if backend == "torch-eager-fp32" else [])) == 0
        outs[backend] = np.asarray(Image.open(out / "masks" / "frame.png"))
    assert outs["openvino-bf16"].shape == (40, 48)
    assert np.mean(outs["openvino-bf16"] == outs["torch-eager-fp32"]) > 0.8  # bf16 of the same network


def test_predict_refuses_a_pytorch_backend_for_an_export_folder_and_the_reverse(seg_model, tmp_path, capsys):
    from surgenet.backends import check_backend

    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"")
    with pytest.raises(InputError, match="exported model"):
        check_backend(str(folder), "torch-cuda-graphs-fp16")
    with pytest.raises(InputError, match="needs .*model.int8.xml.*--int8 --calib FRAMES"):
        check_backend(str(folder), "openvino-int8")
    with pytest.raises(InputError, match="export it first .*--trt"):
        check_backend("surgenet-caformer", "tensorrt")
    assert check_backend(str(folder), "openvino") == "openvino-f32"
    assert check_backend("surgenet-caformer", None) == "torch-eager-fp32"


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", ["torch-cuda-graphs-fp16", "torch-cuda-graphs-bf16"])
def test_cuda_graphs_backends_agree_with_fp32_on_the_gpu(seg_model, name):
    reference = registry.open_runner("torch-cuda-fp32", seg_model)
    runner = registry.open_runner(name, seg_model)
    for batch in (1, 2):  # a new batch is a new graph
        x = torch.randn(batch, 3, *SIZE, generator=torch.Generator().manual_seed(batch)).numpy()
        expected = reference(x)
        first, again = runner(x), runner(x)  # recorded, then replayed: the same numbers
        np.testing.assert_array_equal(first, again)
        scale = float(np.abs(expected).max())
        assert float(np.abs(first - expected).max()) < (0.02 if name.endswith("fp16") else 0.08) * scale + 1e-3
    assert len(runner._warm) == 2


@pytest.mark.cuda
@needs_cuda
def test_predict_runs_the_cuda_graphs_backend_on_an_image(seg_model, tmp_path):
    from PIL import Image

    folder = seg_model.save_pretrained(tmp_path / "saved")
    image = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image)
    masks = {}
    for backend in ("torch-cuda-fp32", "torch-cuda-graphs-fp16"):
        out = tmp_path / backend
        assert main(["predict", str(image), "--model", str(folder), "--backend", backend, "--device", "cuda",
                     "--out", str(out), "--no-overlay"]) == 0
        masks[backend] = np.asarray(Image.open(out / "masks" / "frame.png"))
    assert np.mean(masks["torch-cuda-fp32"] == masks["torch-cuda-graphs-fp16"]) > 0.95


def test_an_isa_cap_hides_the_features_above_it(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 on an AMX Xeon: the registry offers what an AVX2-only CPU gets."""
    import surgenet.runtime.cpu as cpu

    xeon = {"sse4_2", "avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
            "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile"}
    monkeypatch.setattr(cpu, "cpu_flags", lambda: set(xeon))
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert cpu.usable_flags() == xeon and cpu.cpu_has_native_bf16() and registry.unavailable_reason("openvino-bf16") is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cpu.AVX2_ONLY_ENV["ONEDNN_MAX_CPU_ISA"])
    assert cpu.usable_flags() == {"sse4_2", "avx", "avx2", "fma"}
    assert not cpu.cpu_has_native_bf16() and not cpu.cpu_has_int8_dot()
    reason = registry.unavailable_reason("openvino-bf16")
    assert "no native bf16" in reason and "ONEDNN_MAX_CPU_ISA=AVX2" in reason
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_bf16")  # case-insensitive, as oneDNN reads it
    assert cpu.usable_flags() == xeon - {"avx512_fp16", "amx_bf16", "amx_int8", "amx_tile"}
    assert cpu.cpu_has_native_bf16() and cpu.cpu_has_int8_dot()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX10_1_512_AMX")  # an alias of AVX512_CORE_AMX
    assert cpu.usable_flags() == xeon
    assert cpu.cpu_fingerprint() != (monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2") or cpu.cpu_fingerprint())
