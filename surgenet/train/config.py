"""Training configurations: dataclasses read from YAML, refined by ``--set key=value`` overrides.

A config is a file in ``surgenet/train/configs/`` (named without ``.yaml``) or any YAML path.
Overrides use dotted keys into the nested sections, e.g. ``--set optim.lr=1e-3`` or
``--set crops.global_size=128``; values are parsed as YAML (``[1, 2]``, ``null``, ``true``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

from ..bounds import check_number
from ..exceptions import InputError, MissingExtraError
from ..io.text import read_user_text

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class ModelConfig:
    """The backbone: a zoo name fixes the architecture; ``init`` where its weights start."""

    NUMBERS: ClassVar[dict[str, str]] = {"drop_path_rate": "fraction"}

    name: str = "surgenetxl-caformer"
    drop_path_rate: float = 0.1
    # Extra timm arguments of the network (for example smaller ``depths`` in smoke tests).
    network_kwargs: dict[str, Any] = field(default_factory=dict)
    # null: random weights (a run from scratch); "pretrained": the released teacher of ``name``;
    # a path: any file or folder that surgenet.load_backbone(weights=...) reads.
    init: str | None = None


@dataclass
class CropConfig:
    """DINO multi-crop: two global views and ``local_crops`` small views per image."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "global_size": "image_side", "local_size": "image_side", "global_scale": "share", "local_scale": "share",
        "local_crops": "crops", "mean": "norm_mean", "std": "norm_std",
    }
    RULES: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("local_size", "<", "global_size"), ("global_scale", "ordered", ""), ("local_scale", "ordered", ""),
    )

    global_size: int = 224
    local_size: int = 96
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    local_crops: int = 8
    # null: the normalisation of the zoo entry (ImageNet statistics, as in the SurgeNet runs).
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@dataclass
class HeadConfig:
    """The DINO projection head on the pooled backbone embedding."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "out_dim": "channels", "hidden_dim": "channels", "bottleneck_dim": "channels", "nlayers": "layers",
    }

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    nlayers: int = 3
    norm_last_layer: bool = True


@dataclass
class LossConfig:
    """Centring and sharpening of the teacher, temperature of the student."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "teacher_temp": "temperature", "warmup_teacher_temp": "temperature",
        "warmup_teacher_temp_epochs": "epochs_or_zero", "student_temp": "temperature",
        "center_momentum": "momentum",
    }

    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    student_temp: float = 0.1
    center_momentum: float = 0.9


@dataclass
class OptimConfig:
    """AdamW with DINO's schedules; ``lr`` is per 256 images and scales with the global batch."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "lr": "lr", "min_lr": "lr_or_zero", "warmup_epochs": "epochs_or_zero", "weight_decay": "weight_decay",
        "weight_decay_end": "weight_decay", "momentum_teacher": "momentum", "sgd_momentum": "momentum",
        "clip_grad": "grad_clip", "freeze_last_layer": "epochs_or_zero",
    }
    RULES: ClassVar[tuple[tuple[str, str, str], ...]] = (("min_lr", "<=", "lr"),)

    optimizer: str = "adamw"  # adamw | lars (SimCLR's large-batch optimiser) | sgd
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float = 0.996  # EMA of the teacher/target (DINO, BYOL, MSN), cosine to 1
    sgd_momentum: float = 0.9  # lars and sgd only
    clip_grad: float = 3.0  # per-parameter gradient norm, as DINO; 0 turns clipping off
    freeze_last_layer: int = 1  # epochs during which the head's last layer is not updated


@dataclass
class BYOLConfig:
    """BYOL: projector and predictor MLPs (Linear-BN-ReLU-Linear), two views per image."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "hidden_dim": "channels", "projection_dim": "channels", "view_size": "image_side", "view_scale": "share",
        "jitter": "fraction", "jitter_p": "fraction", "gray_p": "fraction", "blur_p": "fraction",
    }
    RULES: ClassVar[tuple[tuple[str, str, str], ...]] = (("view_scale", "ordered", ""),)

    hidden_dim: int = 4096
    projection_dim: int = 256
    view_size: int = 224
    view_scale: tuple[float, float] = (0.08, 1.0)
    # Views of the BYOL pituitary-surgery phase-recognition recipe: colour jitter (0.6, 0.4, 0.5, 0.5)
    # with p 0.6, blur p 0.6.
    jitter: tuple[float, float, float, float] = (0.6, 0.4, 0.5, 0.5)
    jitter_p: float = 0.6
    gray_p: float = 0.0
    blur_p: float = 0.6


@dataclass
class SimCLRConfig:
    """SimCLR: a projector MLP and the NT-Xent loss over the views of the global batch."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "hidden_dim": "channels", "projection_dim": "channels", "num_layers": "layers",
        "temperature": "temperature", "view_size": "image_side", "view_scale": "share", "jitter": "fraction",
        "jitter_p": "fraction", "gray_p": "fraction", "blur_p": "fraction",
    }
    RULES: ClassVar[tuple[tuple[str, str, str], ...]] = (("view_scale", "ordered", ""),)

    hidden_dim: int = 2048
    projection_dim: int = 128
    num_layers: int = 2
    batch_norm: bool = True  # SyncBatchNorm on GPUs under torchrun (global statistics, as SimCLR)
    temperature: float = 0.1
    gather_distributed: bool = True  # negatives from every process, as multi-GPU SimCLR does
    view_size: int = 224
    view_scale: tuple[float, float] = (0.08, 1.0)
    jitter: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)  # strength 1
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5


@dataclass
class MSNConfig:
    """MSN: masked anchor views of a ViT against an EMA target, matched through prototypes."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "hidden_dim": "channels", "projection_dim": "channels", "num_prototypes": "channels",
        "mask_ratio": "mask_ratio", "temperature": "temperature", "target_temperature": "temperature",
        "me_max_weight": "loss_weight", "sinkhorn_iterations": "iterations_or_zero", "random_size": "image_side",
        "random_scale": "share", "focal_size": "image_side", "focal_scale": "share", "focal_views": "crops",
        "jitter": "fraction", "jitter_p": "fraction", "gray_p": "fraction", "blur_p": "fraction",
    }
    RULES: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("focal_size", "<", "random_size"), ("random_scale", "ordered", ""), ("focal_scale", "ordered", ""),
    )

    hidden_dim: int = 2048
    projection_dim: int = 256
    num_prototypes: int = 1024
    mask_ratio: float = 0.5  # share of the anchor views' patches dropped (50 %, as the endoscopic MSN recipe)
    temperature: float = 0.1  # anchor and target prototype softmax
    target_temperature: float = 0.025  # sharpening of the target (0.25 of the anchor temperature)
    me_max_weight: float = 1.0  # mean-entropy maximisation regulariser
    sinkhorn_iterations: int = 3  # balanced target assignments (MSN code default, lightly default)
    random_size: int = 224
    random_scale: tuple[float, float] = (0.3, 1.0)
    focal_size: int = 96
    focal_scale: tuple[float, float] = (0.05, 0.3)
    focal_views: int = 10
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0


@dataclass
class SourceConfig:
    """One data source: a frame folder, a frame list (.csv/.txt) or a video file/folder."""

    NUMBERS: ClassVar[dict[str, str]] = {"weight": "mixture_weight", "fps": "fps"}

    path: str = ""
    weight: float = 1.0  # share of each epoch drawn from this source (mixtures)
    fps: float | None = None  # videos only; null takes DataConfig.fps


@dataclass
class DataConfig:
    """Where the frames come from and how they are read."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "fps": "fps", "samples_per_epoch": "samples_per_epoch", "num_workers": "workers",
    }

    sources: list[SourceConfig] = field(default_factory=list)
    fps: float = 1.0  # frames per second sampled from videos (SurgeNetXL: 1)
    # Images per epoch; null: the total number of frames of all sources.
    samples_per_epoch: int | None = None
    num_workers: int = 4


@dataclass
class TrainConfig:
    """The loop: epochs, batch, precision, checkpoints and logs."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "epochs": "epochs", "batch_size": "batch_size", "max_steps": "steps", "seed": "seed",
        "checkpoint_every": "every_steps", "keep_every_epochs": "epochs_or_zero", "log_every": "every_steps",
    }

    epochs: int = 100
    batch_size: int = 64  # global: split across the processes of a torchrun job
    max_steps: int | None = None  # stop after this many steps; the schedules still span ``epochs``
    seed: int = 0
    precision: str = "auto"  # auto (fp16 on GPU, bf16 on a CPU with native bf16, else fp32) | fp16 | bf16 | fp32
    device: str = "auto"  # auto | cpu | cuda
    checkpoint_every: int = 500  # steps; a checkpoint is also written at every epoch end
    keep_every_epochs: int = 0  # >0: also keep checkpoint_epochNNNN.pth every that many epochs
    log_every: int = 10  # steps between JSON-lines log records




@dataclass
class EvalConfig:
    """kNN and/or linear-probe evaluation of the teacher on a labelled frame set at epoch ends
    (optional); the same protocol as ``surgenet-train evaluate``, logged beside the losses."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "every_epochs": "epochs_or_zero", "k": "neighbours", "temperature": "temperature",
        "linear_epochs": "epochs", "linear_lr": "lr", "image_size": "image_side",
    }

    train: str | None = None
    val: str | None = None
    every_epochs: int = 0
    method: str = "knn"  # knn | linear | both
    k: int = 20  # kNN neighbours
    temperature: float = 0.07  # kNN vote temperature
    linear_epochs: int = 200  # linear probe: full-batch AdamW epochs on the frozen features
    linear_lr: float = 0.01
    image_size: int = 224


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs; saved beside its checkpoints as YAML.

    ``method`` picks the plugin; ``crops``/``head``/``loss`` are DINO's, ``byol``/``simclr``/``msn``
    the other methods' own settings. ``per_method`` holds overrides (``key=value``) a config
    applies when it runs with that method, e.g. a ViT for MSN in the tiny config.
    """

    name: str = "run"
    method: str = "dino"
    per_method: dict[str, list[str]] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    byol: BYOLConfig = field(default_factory=BYOLConfig)
    simclr: SimCLRConfig = field(default_factory=SimCLRConfig)
    msn: MSNConfig = field(default_factory=MSNConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def available_configs() -> list[str]:
    """Names of the configs shipped with surgenet (``surgenet-train pretrain --config NAME``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise InputError(f"no config {str(name_or_path)!r}: pass a YAML file or one of {', '.join(available_configs())}.")


def _yaml():
    """PyYAML, imported when a config is read (``import surgenet.train`` and ``--help`` work without it)."""
    try:
        import yaml
    except ImportError as exc:
        raise MissingExtraError("surgenet-train reads its configs with PyYAML, which is not installed: "
                                "pip install 'surgenet[train]'.") from exc
    return yaml


def flag_overrides(args: object, keys: Sequence[str]) -> list[str]:
    """``--set`` overrides of a parsed command line, then ``KEY=JSON`` for each of ``keys`` the user
    gave (an attribute that is not None): command-line flags win over the config file."""
    import json

    overrides = list(getattr(args, "set", None) or [])
    for key in keys:
        value = getattr(args, key, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value, default=str)}")  # default: Path values
    return overrides


def load_config(name_or_path: str | Path | None = None, overrides: Sequence[str] = (),
                cls: type = PretrainConfig) -> Any:
    """A config from a shipped name or a YAML path (or the defaults), with ``key=value`` overrides."""
    yaml = _yaml()
    raw: dict[str, Any] = {}
    if name_or_path is not None:
        text = read_user_text(resolve_config_path(name_or_path))
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"config {name_or_path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise InputError(f"config {name_or_path} must be a YAML mapping of sections.")
    if cls is PretrainConfig:
        # The config's own overrides for the chosen method come first; the command line wins.
        probe: dict[str, Any] = {"method": raw.get("method", "dino")}
        for item in overrides:
            if item.partition("=")[0].strip() == "method":
                apply_override(probe, item)
        # Applied once, here: the run's saved config.yaml holds the result, without per_method, so a
        # resumed run does not apply them again over the command line's values.
        per_method = raw.pop("per_method", None) or {}
        if not isinstance(per_method, dict):
            raise InputError(f"per_method in {name_or_path} must map a method name to a list of key=value overrides.")
        for item in per_method.get(probe["method"]) or []:
            apply_override(raw, str(item))
    for item in overrides:
        apply_override(raw, item)
    config = from_dict(cls, raw)
    check_numbers(config)  # a number out of its range fails here, before any data or model is touched
    return config


def check_numbers(config: Any, where: str = "") -> None:
    """Every number of ``config`` (a config dataclass, its sections included) inside the range the
    table of bounds (:mod:`surgenet.bounds`) gives its kind, and the section's rules between
    keys (``RULES``: ``a < b``, ``a <= b``, a ``(low, high)`` pair ``ordered``); else an
    :class:`~surgenet.exceptions.InputError` naming the key. Each section says the kind of each of
    its numbers in ``NUMBERS``."""
    kinds = getattr(type(config), "NUMBERS", {})
    for f in dataclasses.fields(config):
        value, key = getattr(config, f.name), f"{where}{f.name}"
        if dataclasses.is_dataclass(value):
            check_numbers(value, key + ".")
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                check_numbers(item, f"{key}[{i}].")
        elif value is not None and f.name in kinds:
            for item in value if isinstance(value, (list, tuple)) else (value,):
                check_number(kinds[f.name], item, f"config key {key}")
    for a, op, b in getattr(type(config), "RULES", ()):
        first, second = getattr(config, a), getattr(config, b, None) if b else None
        if first is None or (b and second is None):
            continue
        if op == "ordered":
            if len(first) != 2 or not first[0] <= first[1]:
                raise InputError(f"config key {where}{a} must be two numbers [low, high] with low <= high, got "
                                 f"{list(first)}.")
        elif not (first < second if op == "<" else first <= second):
            raise InputError(f"config key {where}{a} ({first}) must be {op} {where}{b} ({second}).")


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` inside the nested mapping ``raw`` (value parsed as YAML)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise InputError(f"override {item!r} must look like section.key=value, e.g. optim.lr=1e-3.")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InputError(f"override {item!r}: {part} is not a section.")
    yaml = _yaml()
    try:
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise InputError(f"override {item!r}: the value is not valid YAML ({exc.__class__.__name__}); "
                         "quote it or fix the brackets, e.g. crops.global_scale=[0.4,1.0].") from None


def from_dict(cls: type, raw: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and converting sequences."""
    if not isinstance(raw, dict):
        raise InputError(f"config section {where or cls.__name__} must be a mapping, got {raw!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InputError(f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
                         f"valid keys: {', '.join(sorted(where + n for n in names))}.")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _convert(hints[name], value, f"{where}{name}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        return None
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where) if len(inner) == 1 else value
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        if isinstance(value, (str, dict)):
            value = [value]
        return [from_dict(args[0], {"path": v} if isinstance(v, str) else v, f"{where}[{i}].")
                for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"config key {where} needs a list, got {value!r}.")
        item = args[0] if args else None
        return tuple(_convert(item, v, where) if item in (int, float) else v for v in value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise InputError(f"config key {where} needs a {hint.__name__}, got {value!r}.")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-safe mapping of a config (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(config))


def dump_yaml(config: Any) -> str:
    return _yaml().safe_dump(to_dict(config), sort_keys=False)
