"""The TensorRT and ONNX Runtime GPU paths' decisions, checked on CPU.

TensorRT cannot be installed here, so small stand-ins play its documented behaviour: a timing
cache from another GPU is refused by ``set_timing_cache(..., ignore_mismatch=False)``;
``get_timing_cache()`` may return None; onnx-tensorrt imports ReduceSumSquare / ReduceL2 as
``x * x`` (element-wise PROD of a tensor with itself), SUM and SQRT; ONNX Runtime builds a CPU
session when its GPU provider libraries do not load. The expectations come from those facts,
not from the code under test. The real engine build and run are in test_export_trt.py (GPU only).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import types

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from surgenet_export import load_runner  # noqa: E402
from surgenet.runtime.cuda import create_trt_object  # noqa: E402
from surgenet.runtime.errors import BackendUnavailableError, ExportError  # noqa: E402
from surgenet.runtime.metadata import embed_metadata, write_json  # noqa: E402
from surgenet.runtime import trt_runner  # noqa: E402
from surgenet.runtime.ort_runner import OnnxRuntimeRunner, trt_cache_dir  # noqa: E402
from surgenet_export import trt_build  # noqa: E402
from surgenet_export.trt_build import Profile, build_engine, make_profile, pin_squares_fp32, profile_for  # noqa: E402

PHASE_CONFIG = {"task": "phase", "num_classes": 3, "mean": [0.0] * 3, "std": [1.0] * 3, "input_size": [3, 64, 64],
                "size_multiple": 32, "streaming": True, "state_names": ["state_0", "state_1"],
                "state_shapes": [[2, 1, 16], [1, 8]], "state_batch_axes": [1, 0]}


# --------------------------------------------------------------------------- a stand-in for tensorrt

class Tensor:
    def __init__(self, name, dtype="float32"):
        self.name, self.dtype = name, dtype


class Layer:
    def __init__(self, name, type_, inputs, op=None, out_dtype="float32"):
        self.name, self.type, self.op = name, type_, op
        self.inputs = inputs
        self.outputs = [Tensor(name + ":0", out_dtype)]
        self.precision = None
        self.output_types = {}

    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))

    def get_input(self, i):
        return self.inputs[i]

    def get_output(self, i):
        return self.outputs[i]

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


class Network:
    def __init__(self, inputs, layers=()):
        self.inputs, self.layers = inputs, list(layers)

    num_inputs = property(lambda self: len(self.inputs))
    num_layers = property(lambda self: len(self.layers))

    def get_input(self, i):
        return self.inputs[i]

    def get_layer(self, i):
        return self.layers[i]


class Cache:
    def __init__(self, data):
        self.data = data

    def serialize(self):
        return self.data


class BuilderConfig:
    """Refuses a timing cache whose header is from another device, as TensorRT does."""

    def __init__(self, returns_cache=True):
        self.flags, self.profiles, self.attached, self.returns_cache = [], [], [], returns_cache

    def set_memory_pool_limit(self, pool, size):
        pass

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def set_flag(self, flag):
        self.flags.append(flag)

    def create_timing_cache(self, data):
        return Cache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache.data.startswith(b"OTHER-GPU") and not ignore_mismatch:
            return False
        self.attached.append(cache.data)
        return True

    def get_timing_cache(self):
        if not self.returns_cache or not self.attached:
            return None
        return Cache(self.attached[-1] + b"+timings-of-this-build")


class OptProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


def fake_tensorrt(network, config, builder_error=None):
    class Builder:
        def __init__(self, logger):
            if builder_error:
                raise builder_error

        def create_network(self, flags):
            return network

        def create_builder_config(self):
            return config

        def create_optimization_profile(self):
            return OptProfile()

        def build_serialized_network(self, net, cfg):
            return b"PLAN"

    class Parser:
        def __init__(self, net, logger):
            pass

        def parse_from_file(self, path):
            return True

    ns = types.SimpleNamespace
    return ns(
        __version__="10.9.0", float32="float32", float16="float16",
        LayerType=ns(REDUCE="REDUCE", ELEMENTWISE="ELEMENTWISE", UNARY="UNARY", NORMALIZATION="NORMALIZATION",
                     CONVOLUTION="CONVOLUTION"),
        ElementWiseOperation=ns(POW="POW", PROD="PROD", SUM="SUM", DIV="DIV"),
        UnaryOperation=ns(SQRT="SQRT", EXP="EXP"),
        BuilderFlag=ns(FP16="FP16", OBEY_PRECISION_CONSTRAINTS="OBEY_PRECISION_CONSTRAINTS"),
        NetworkDefinitionCreationFlag=ns(STRONGLY_TYPED=0), MemoryPoolType=ns(WORKSPACE="WORKSPACE"),
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        Builder=Builder, OnnxParser=Parser, IElementWiseLayer=Layer, IUnaryLayer=Layer,
    )


def tiny_onnx(path, config):
    """An ONNX file carrying surgenet metadata (the build reads the config from it)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3, "h", "w"])])
    model = helper.make_model(graph)
    embed_metadata(model, config)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def gpu_facts(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA Test GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))


def run_build(tmp_path, monkeypatch, network, config, profile, **kwargs):
    monkeypatch.setattr(trt_build, "import_tensorrt", lambda: fake_tensorrt(network, config))
    onnx_path = tiny_onnx(tmp_path / "model.onnx", PHASE_CONFIG)
    return build_engine(onnx_path, tmp_path / "model.engine", profile=profile, fp16=True, **kwargs)


# --------------------------------------------------------------------------- profiles

def test_profile_has_every_state_input_at_the_three_batches():
    profile = profile_for(PHASE_CONFIG, (1, 2, 6), ((32, 64), (64, 64), (128, 96)))
    assert profile.shapes == {
        "input": ((1, 3, 32, 64), (2, 3, 64, 64), (6, 3, 128, 96)),
        "state_0": ((2, 1, 16), (2, 2, 16), (2, 6, 16)),   # batch on axis 1
        "state_1": ((1, 8), (2, 8), (6, 8)),               # batch on axis 0
    }
    with pytest.raises(ExportError, match="min <= opt <= max"):
        profile_for(PHASE_CONFIG, (2, 1, 6), ((32, 32),) * 3)


def test_engine_profile_sets_shapes_for_image_and_states(tmp_path, monkeypatch, gpu_facts):
    network = Network([Tensor("input"), Tensor("state_0"), Tensor("state_1")])
    config = BuilderConfig()
    profile = make_profile(PHASE_CONFIG, batch=1, imgsz=(64, 64), dynamic=True, max_batch=4)
    run_build(tmp_path, monkeypatch, network, config, profile)
    (given,) = config.profiles
    assert given.shapes["state_0"] == ((2, 1, 16), (2, 1, 16), (2, 4, 16))
    assert given.shapes["state_1"] == ((1, 8), (1, 8), (4, 8))
    assert given.shapes["input"] == ((1, 3, 32, 32), (1, 3, 64, 64), (4, 3, 128, 128))

    image_only = Profile({"input": profile.shapes["input"]})  # what the latency benchmark used to build
    with pytest.raises(ExportError, match="no shapes for input 'state_0'"):
        run_build(tmp_path, monkeypatch, network, BuilderConfig(), image_only)


def test_parity_shapes_are_clamped_inside_the_profile():
    profile = make_profile({"size_multiple": 32}, batch=2, imgsz=(256, 256), dynamic=True, max_batch=2,
                           min_imgsz=(224, 224), max_imgsz=(320, 320))
    # parity_shapes(2, (256, 256), dynamic=True) asks for batch 3 at 3/4 size (192): both outside.
    assert profile.clamp([(2, 256, 256), (3, 192, 192)], size_multiple=32) == [(2, 256, 256), (2, 224, 224)]
    # a size between multiples goes down to one, but never below the profile's minimum
    assert profile.clamp([(1, 300, 250)], size_multiple=32) == [(1, 288, 224)]
    static = make_profile({"size_multiple": 32}, batch=1, imgsz=(64, 96), dynamic=False)
    assert static.clamp([(1, 64, 96), (2, 32, 64)], size_multiple=32) == [(1, 64, 96)]  # duplicates dropped


# --------------------------------------------------------------------------- timing cache

def test_foreign_timing_cache_is_replaced_and_the_engine_is_written(tmp_path, monkeypatch, gpu_facts):
    (tmp_path / "timing.cache").write_bytes(b"OTHER-GPU timings")
    config = BuilderConfig()
    profile = make_profile({}, batch=1, imgsz=(64, 64), dynamic=False)
    report = run_build(tmp_path, monkeypatch, Network([Tensor("input")]), config, profile)
    assert config.attached == [b""]  # the builder got a fresh cache rather than none
    assert (tmp_path / "timing.cache").read_bytes() == b"+timings-of-this-build"
    assert report["tensorrt"]["timing_cache_reused"] is False
    assert json.loads((tmp_path / "model.engine.json").read_text())["artifact"] == "model.engine"

    # the next build on this GPU reuses it
    config = BuilderConfig()
    report = run_build(tmp_path, monkeypatch, Network([Tensor("input")]), config, profile)
    assert config.attached == [b"+timings-of-this-build"] and report["tensorrt"]["timing_cache_reused"] is True


def test_no_timing_cache_after_the_build_still_leaves_a_loadable_engine(tmp_path, monkeypatch, gpu_facts):
    profile = make_profile({}, batch=1, imgsz=(64, 64), dynamic=False)
    report = run_build(tmp_path, monkeypatch, Network([Tensor("input")]), BuilderConfig(returns_cache=False), profile)
    assert (tmp_path / "model.engine").read_bytes() == b"PLAN"
    sidecar = json.loads((tmp_path / "model.engine.json").read_text())
    assert sidecar["config"]["task"] == "phase" and sidecar["tensorrt"]["timing_cache"] is None
    assert report["tensorrt"]["gpu"] == "NVIDIA Test GPU" and not (tmp_path / "timing.cache").exists()


# --------------------------------------------------------------------------- FP16 pinning

def test_fp16_pins_the_layers_that_square_activations():
    x, g, shape = Tensor("x"), Tensor("gamma"), Tensor("shape", "int64")
    trt = fake_tensorrt(None, None)
    layers = [
        Layer("grn_square", "ELEMENTWISE", [x, x], op="PROD"),       # ReduceL2 / ReduceSumSquare: x * x
        Layer("grn_sum", "REDUCE", [Tensor("grn_square:0")]),
        Layer("grn_sqrt", "UNARY", [Tensor("grn_sum:0")], op="SQRT"),
        Layer("pow", "ELEMENTWISE", [x, Tensor("two")], op="POW"),
        Layer("scale", "ELEMENTWISE", [g, x], op="PROD"),            # an ordinary product: stays FP16
        Layer("divide", "ELEMENTWISE", [x, Tensor("grn_sqrt:0")], op="DIV"),
        Layer("exp", "UNARY", [x], op="EXP"),
        Layer("layernorm", "NORMALIZATION", [x]),                    # FP32 inside TensorRT already
        Layer("conv", "CONVOLUTION", [x]),
        Layer("shape_square", "ELEMENTWISE", [shape, shape], op="PROD", out_dtype="int64"),
        Layer("shape_sum", "REDUCE", [shape], out_dtype="int64"),
    ]
    config = BuilderConfig()
    pinned = pin_squares_fp32(trt, Network([x], layers), config)
    assert pinned == ["grn_square", "grn_sum", "grn_sqrt", "pow"]
    by_name = {layer.name: layer for layer in layers}
    for name in pinned:
        assert by_name[name].precision == "float32" and by_name[name].output_types == {0: "float32"}
    assert all(by_name[n].precision is None for n in ("scale", "layernorm", "conv", "shape_square", "shape_sum"))
    assert config.flags == ["OBEY_PRECISION_CONSTRAINTS"]


# --------------------------------------------------------------------------- old drivers

def test_a_driver_too_old_is_named_instead_of_a_pybind_type_error(tmp_path, monkeypatch, gpu_facts):
    def Builder(logger):
        raise TypeError("__init__(): incompatible constructor arguments. The following argument types are supported")

    with pytest.raises(BackendUnavailableError, match="driver is too old"):
        create_trt_object(Builder, object(), "10.9.0")
    trt = fake_tensorrt(Network([Tensor("input")]), BuilderConfig(),
                        builder_error=TypeError("__init__(): incompatible constructor arguments"))
    monkeypatch.setattr(trt_build, "import_tensorrt", lambda: trt)
    with pytest.raises(BackendUnavailableError, match="NVIDIA driver"):
        build_engine(tiny_onnx(tmp_path / "m.onnx", PHASE_CONFIG), profile=make_profile({}, 1, (64, 64), False))
    with pytest.raises(ValueError):  # other errors are not renamed
        create_trt_object(lambda logger: (_ for _ in ()).throw(ValueError("bug")), object(), "10.9.0")


# --------------------------------------------------------------------------- load_runner falls back to ONNX

SEG_CONFIG = {"task": "segmentation", "num_classes": 3, "mean": [0.0] * 3, "std": [1.0] * 3,
              "input_size": [3, 8, 8], "size_multiple": 1, "streaming": False}


@pytest.fixture
def export_folder(tmp_path):
    """A folder as surgenet-export --trt leaves it: model.onnx, model.engine and its sidecar.
    The graph doubles its input, so the runner's output is known without a model."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["input", "input"], ["logits"])], "double",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3, "h", "w"])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    embed_metadata(proto, SEG_CONFIG)
    (tmp_path / "model.onnx").write_bytes(proto.SerializeToString())
    (tmp_path / "model.engine").write_bytes(b"PLAN")
    write_json(tmp_path / "model.engine.json", {"config": SEG_CONFIG, "tensorrt": {
        "version": "10.3.0", "gpu": "NVIDIA A100", "compute_capability": [8, 0]}})
    return tmp_path


@pytest.mark.parametrize("situation", ["tensorrt-missing", "other-tensorrt", "other-gpu"])
def test_folder_falls_back_to_onnx_when_the_engine_cannot_run(export_folder, monkeypatch, situation):
    folder = export_folder
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    if situation == "tensorrt-missing":
        def missing():
            raise BackendUnavailableError("the TensorRT Python package is not installed")
        monkeypatch.setattr(trt_runner, "import_tensorrt", missing)
        why = "not installed"
    else:
        version, capability = ("10.9.0", (8, 0)) if situation == "other-tensorrt" else ("10.3.0", (9, 0))
        monkeypatch.setattr(trt_runner, "import_tensorrt", lambda: types.SimpleNamespace(__version__=version))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
        why = "TensorRT 10.3.0" if situation == "other-tensorrt" else "compute capability 8.0"
    with pytest.warns(UserWarning, match=why):
        runner = load_runner(folder)
    assert runner.backend == "onnxruntime-cpu"
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(runner(x), 2 * x)
    with pytest.raises(BackendUnavailableError):  # asked for TensorRT by name: no silent substitute
        load_runner(folder / "model.engine", backend="tensorrt")


def test_engine_mismatch_reasons():
    built = {"version": "10.3.0", "gpu": "NVIDIA A100", "compute_capability": [8, 0]}
    assert trt_runner.engine_mismatch(built, "10.3.0", (8, 0)) is None
    assert "TensorRT 10.3.0" in trt_runner.engine_mismatch(built, "10.3.1", (8, 0))
    assert "8.0 (NVIDIA A100)" in trt_runner.engine_mismatch(built, "10.3.0", (8, 6))


# --------------------------------------------------------------------------- ONNX Runtime GPU providers

def test_ort_refuses_a_session_that_quietly_fell_back_to_cpu(export_folder, monkeypatch):
    folder = export_folder
    real_session = ort.InferenceSession

    def session_without_gpu_libraries(path, options=None, providers=None):
        # onnxruntime-gpu without loadable CUDA libraries: logs an error, runs on the CPU provider
        return real_session(path, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", session_without_gpu_libraries)
    with pytest.raises(BackendUnavailableError, match="could not start its CUDAExecutionProvider"):
        OnnxRuntimeRunner(folder / "model.onnx", device="cuda")
    with pytest.raises(BackendUnavailableError, match="TensorrtExecutionProvider"):
        OnnxRuntimeRunner(folder / "model.onnx", device="tensorrt", cache_dir=folder / "cache")
    assert OnnxRuntimeRunner(folder / "model.onnx", device="cpu").session.get_providers() == ["CPUExecutionProvider"]


def test_ort_tensorrt_cache_folder_is_keyed_on_the_file_contents(tmp_path):
    a = tmp_path / "a" / "model.onnx"
    b = tmp_path / "b" / "model.onnx"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(b"graph with weights 1")
    b.write_bytes(b"graph with weights 2")  # same name, same graph, other weights
    root = tmp_path / "cache"
    expected = hashlib.sha256(b"graph with weights 1").hexdigest()[:16]
    assert trt_cache_dir(a, fp16=True, root=root) == root / f"model-{expected}-fp16"
    assert trt_cache_dir(b, fp16=True, root=root) != trt_cache_dir(a, fp16=True, root=root)
    assert trt_cache_dir(a, fp16=False, root=root) != trt_cache_dir(a, fp16=True, root=root)
    shutil.copy(a, b)
    assert trt_cache_dir(b, fp16=True, root=root) == trt_cache_dir(a, fp16=True, root=root)
    assert trt_cache_dir(a, fp16=True).parent == a.parent / "ort_trt_cache"


# --------------------------------------------------------------------------- stream order of run_tensors

class Stream:
    def __init__(self, name, log, handle):
        self.name, self.log, self.cuda_stream = name, log, handle

    def wait_stream(self, other):
        self.log.append(("wait", self.name, other.name))


class Context:
    def __init__(self, log, accept=True):
        self.log, self.accept = log, accept

    def set_input_shape(self, name, shape):
        self.log.append(("shape", name))
        return self.accept

    def set_tensor_address(self, name, address):
        self.log.append(("address", name))

    def get_tensor_shape(self, name):
        return (1, 2)

    def execute_async_v3(self, handle):
        self.log.append(("execute", handle))
        return True


def test_run_tensors_orders_the_engine_between_the_callers_work(monkeypatch):
    log: list = []
    caller, engine = Stream("caller", log, 1), Stream("engine", log, 7)

    @contextlib.contextmanager
    def use_stream(stream):
        log.append(("enter", stream.name))
        yield
        log.append(("exit", stream.name))

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: caller)
    monkeypatch.setattr(torch.cuda, "stream", use_stream)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, s: log.append(("record", self.data_ptr(), s.name)))
    runner = object.__new__(trt_runner.TensorRTRunner)
    runner.torch_device, runner.stream, runner.context = torch.device("cpu"), engine, Context(log)
    runner.input_names, runner.output_names = ["input", "state_0"], ["logits"]
    runner._dtypes = {"input": torch.float32, "state_0": torch.float32, "logits": torch.float32}
    feeds = {"input": torch.zeros(1, 3, 4, 4), "state_0": torch.zeros(1, 8)}
    (out,) = runner.run_tensors(feeds)

    steps = [e[:2] if e[0] != "record" else (e[0], e[2]) for e in log]
    first_input = steps.index(("shape", "input"))
    assert steps.index(("wait", "engine")) < steps.index(("enter", "engine")) < first_input  # caller's writes first
    assert steps.index(("enter", "engine")) < steps.index(("execute", 7)) < steps.index(("exit", "engine"))
    assert steps.index(("wait", "caller")) > steps.index(("execute", 7))  # caller's next work waits for the engine
    assert ("record", out.data_ptr(), "caller") in log  # freed on the caller's stream safely
    for t in feeds.values():
        assert ("record", t.data_ptr(), "engine") in log

    runner.context = Context(log, accept=False)
    with pytest.raises(ExportError, match="outside the engine's optimisation profile"):
        runner.run_tensors(feeds)
