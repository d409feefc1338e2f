"""torch.hub entry points, derived from the surgenet registry (no second list of models).

    torch.hub.load("path/to/surgenet", "surgenetxl_caformer", source="local")  # a backbone, released weights
    torch.hub.load(".", "backbone", "surgenet-pvtv2", source="local")
    torch.hub.load(".", "model", "surgenetxl-caformer", task="segmentation", num_classes=13, source="local")
"""

dependencies = ["torch", "timm", "huggingface_hub", "safetensors"]

from surgenet.zoo.registry import REGISTRY as _REGISTRY  # noqa: E402


def backbone(name: str, pretrained: bool = True, **kwargs):
    """The backbone ``name`` (see ``surgenet.list_models()``); arguments as ``surgenet.load_backbone``."""
    from surgenet.zoo.factory import load_backbone

    return load_backbone(name, pretrained=pretrained, **kwargs)


def model(name: str, task: str, pretrained: bool = True, **kwargs):
    """A task model (segmentation, phase, cvs, tools) on backbone ``name``; arguments as ``surgenet.load_model``."""
    from surgenet.models import load_model

    return load_model(name, task=task, pretrained=pretrained, **kwargs)


def _make_entry(name: str):
    entry = _REGISTRY[name]

    def load(pretrained: bool = True, **kwargs):
        return backbone(name, pretrained=pretrained, **kwargs)

    load.__name__ = name.replace("-", "_")
    load.__doc__ = (f"{entry.description}\n\nWeights: {entry.repo_id}/{entry.filename} "
                    f"({entry.license}). Arguments as surgenet.load_backbone.")
    return load


for _name in _REGISTRY:
    globals()[_name.replace("-", "_")] = _make_entry(_name)
del _name
