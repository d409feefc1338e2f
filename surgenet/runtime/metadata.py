"""Metadata that travels with an exported model: ONNX ``metadata_props`` and JSON sidecars.

The ONNX file carries the full runner config under ``surgenet.config`` (JSON) plus readable
single keys (model, task, classes, mean/std, input size, versions), so ``netron`` or
``onnx.load(...).metadata_props`` shows them. A TensorRT plan has no place for metadata: its
sidecar ``model.engine.json`` is the only record and is required to run it with a config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .._version import __version__ as SURGENET_VERSION
from ..io.atomic import atomic_write_bytes, atomic_write_text
from ..io.text import read_user_text

from .errors import ExportError

CONFIG_KEY = "surgenet.config"
SIDECAR_SUFFIX = ".json"


def metadata_props(config: Mapping[str, Any]) -> dict[str, str]:
    """String key/value pairs for ``ModelProto.metadata_props``."""
    props = {
        CONFIG_KEY: json.dumps(config, sort_keys=True),
        "surgenet.model": str(config.get("backbone", config.get("model", ""))),
        "surgenet.task": str(config["task"]),
        "surgenet.num_classes": str(config["num_classes"]),
        "surgenet.classes": json.dumps(config.get("class_names", [])),
        "surgenet.mean": json.dumps(config["mean"]),
        "surgenet.std": json.dumps(config["std"]),
        "surgenet.input_size": json.dumps(config["input_size"]),
        "surgenet.input_format": str(config.get("input_format", "normalized")),
        "surgenet.version": SURGENET_VERSION,
    }
    if config.get("preprocess_baked"):
        props["surgenet.baked_mean"] = json.dumps(config["baked_mean"])
        props["surgenet.baked_std"] = json.dumps(config["baked_std"])
    return props


def embed_metadata(model_proto, config: Mapping[str, Any]) -> None:
    """Replace the model's ``surgenet.*`` metadata with ``config`` (other keys are kept)."""
    keep = [p for p in model_proto.metadata_props if not p.key.startswith("surgenet.")]
    del model_proto.metadata_props[:]
    for p in keep:
        model_proto.metadata_props.add(key=p.key, value=p.value)
    for key, value in metadata_props(config).items():
        model_proto.metadata_props.add(key=key, value=value)


def config_from_props(props: Mapping[str, str], source: str) -> dict[str, Any]:
    """The runner config stored by :func:`embed_metadata`."""
    if CONFIG_KEY not in props:
        raise ExportError(f"{source} has no {CONFIG_KEY} metadata: it was not written by surgenet-export. "
                          "Re-export it, or pass the config to the runner yourself.")
    try:
        return json.loads(props[CONFIG_KEY])
    except json.JSONDecodeError as exc:
        raise ExportError(f"{source}: {CONFIG_KEY} metadata is not valid JSON ({exc}); re-export the model.") from exc


def read_onnx_config(path: str | Path) -> dict[str, Any]:
    """The config embedded in an ONNX file (weights stored externally are not read)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return config_from_props({p.key: p.value for p in proto.metadata_props}, str(path))


def read_export_config(folder: str | Path) -> dict[str, Any]:
    """The runner config of a ``surgenet-export`` folder, without opening a runtime: from
    ``model.onnx``'s metadata, else the sidecar of ``model.int8.xml`` or ``model.engine``."""
    folder = Path(folder).expanduser()
    if (folder / "model.onnx").is_file():
        return read_onnx_config(folder / "model.onnx")
    for name in ("model.int8.xml", "model.engine"):
        if (folder / name).is_file():
            return dict(read_json(sidecar_path(folder / name))["config"])
    raise ExportError(f"{folder} holds neither model.onnx, model.int8.xml nor model.engine; point at the output "
                      "folder of surgenet-export.")


def sidecar_path(artifact: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SIDECAR_SUFFIX)


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write JSON atomically: a reader never sees a half-written file."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n"
    return atomic_write_text(path, text)


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path} does not exist; export the model again with surgenet-export.")
    try:
        return json.loads(read_user_text(path))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} is not valid JSON ({exc}); export the model again.") from exc


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a binary artifact atomically."""
    return atomic_write_bytes(path, data)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
