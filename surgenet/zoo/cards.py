"""Model cards (Hugging Face README.md) rendered from a registry entry.

Used by ``save_pretrained``/``push_to_hub`` for task models and by the generator of
``model_cards/`` for the released backbones, so both say the same things the same way. Every
fact comes from the registry entry (plus what the caller passes in ``extra``); nothing is typed
twice.
"""

from __future__ import annotations

import re
from typing import Any

from .._version import __version__
from .registry import ModelEntry

PIPELINE_TAGS = {
    None: "image-feature-extraction",
    "segmentation": "image-segmentation",
    "phase": "video-classification",
    "cvs": "image-classification",
    "tools": "image-classification",
}

TASK_TITLES = {
    "segmentation": "semantic segmentation (FPN decoder)",
    "phase": "surgical phase recognition (causal temporal model)",
    "cvs": "critical view of safety assessment (3 criteria, multi-label)",
    "tools": "surgical tool presence (one sigmoid per instrument, multi-label)",
}

OUTPUT_UNITS = {"segmentation": "classes", "phase": "phases", "cvs": "criteria", "tools": "tools"}

TASK_NOTE = "This model adds task layers to that backbone; see the task section.\n"

_LICENSE_NAMES = {"cc-by-nc-sa-4.0": "CC BY-NC-SA 4.0 (non-commercial, share-alike)", "apache-2.0": "Apache-2.0"}
_NON_COMMERCIAL = ("cc-by-nc-sa-4.0",)


def _dataset_name(entry: ModelEntry) -> str:
    return entry.pretraining_data.split(":", 1)[0].strip()


def _doi(paper: str) -> str | None:
    match = re.search(r"doi:\s*(\S+)", paper)
    return match.group(1).rstrip(".,") if match else None


def _metadata(entry: ModelEntry, task: str | None, extra: dict[str, Any]) -> str:
    """The YAML header the Hub reads, written by huggingface_hub's own ModelCardData (its keys,
    its quoting), so the Hub's parser and ours cannot disagree."""
    from huggingface_hub import ModelCardData

    tags = ["surgenet", "surgery", "surgical-computer-vision", "endoscopy", "laparoscopy",
            "self-supervised-learning", entry.pretraining_method.split(" ")[0].lower(), entry.family]
    if task:
        tags.append(task if task != "cvs" else "critical-view-of-safety")
    data = ModelCardData(license=entry.license, library_name="surgenet", pipeline_tag=PIPELINE_TAGS[task],
                         tags=list(dict.fromkeys(tags)), datasets=[_dataset_name(entry)],
                         base_model=entry.repo_id if task else None)
    return f"---\n{data.to_yaml()}\n---\n"


def _usage(entry: ModelEntry, task: str | None, extra: dict[str, Any]) -> str:
    if task is None:
        return (
            "```python\nimport torch, surgenet\n\n"
            f"backbone = surgenet.load_backbone({entry.name!r})  # downloads and checks the weights\n"
            f"features = backbone(torch.randn(1, {', '.join(map(str, entry.input_size))}))  # list of NCHW maps\n"
            "embedding = backbone.forward_embedding(torch.randn(1, "
            f"{', '.join(map(str, entry.input_size))}))  # pooled (1, C)\n```\n\n"
            "Build a task model on it with "
            f"`surgenet.load_model({entry.name!r}, task=\"segmentation\", num_classes=N)` "
            "(or `task=\"phase\"`, `task=\"cvs\"`).\n")
    where = extra.get("repo_id", "path/to/this/folder")
    return (
        "```python\nimport surgenet\n\n"
        f"model = surgenet.load_model({where!r})\n"
        "predictor = surgenet.Predictor(model)\n"
        "result = predictor.predict(\"frame.png\")\n```\n\n"
        f"Command line: `surgenet predict --model {where} --task {task} VIDEO_OR_FOLDER --out OUT`.\n")


def _task_section(task: str, extra: dict[str, Any]) -> str:
    lines = [f"## Task: {TASK_TITLES[task]}", ""]
    if "num_classes" in extra:
        lines.append(f"- Outputs: {extra['num_classes']} {OUTPUT_UNITS[task]}")
    names = extra.get("class_names")
    if names:
        lines.append("- Names: " + ", ".join(f"`{n}`" for n in names))
    if extra.get("head"):
        lines.append("- Head: " + ", ".join(f"{k}={v}" for k, v in extra["head"].items()))
    if task == "segmentation":
        lines.append("- Logits at the input resolution for any input size (padded internally).")
    elif task == "phase":
        lines.append("- Causal: the prediction for frame t uses frames up to t only; runs online, frame by frame.")
    else:
        lines.append("- Sigmoid probability per criterion (Endoscapes C1, C2, C3).")
    if extra.get("metrics"):
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in extra["metrics"].items()]
    if extra.get("training"):
        lines += ["", f"Training: {extra['training']}"]
    return "\n".join(lines) + "\n"


def render_card(entry: ModelEntry, task: str | None = None, extra: dict[str, Any] | None = None) -> str:
    """The Markdown model card of ``entry`` (a backbone) or of a ``task`` model built on it.

    ``extra`` may carry ``num_classes``, ``class_names``, ``head`` (hyperparameters),
    ``input_size``, ``mean``/``std`` (overriding the entry's), ``metrics`` (name -> value),
    ``training`` (free text) and ``repo_id`` (where the model is published).
    """
    if task not in PIPELINE_TAGS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(t for t in PIPELINE_TAGS if t)} or None.")
    extra = dict(extra or {})
    size = extra.get("input_size", list(entry.input_size))
    mean, std = extra.get("mean", list(entry.mean)), extra.get("std", list(entry.std))
    license_text = _LICENSE_NAMES.get(entry.license, entry.license)
    title = f"{entry.name}" + (f" for {TASK_TITLES[task]}" if task else "")
    doi = _doi(entry.paper)
    params = f"{entry.num_params / 1e6:.1f} M backbone parameters" if entry.num_params else "parameters: see the paper"
    flops = f", {entry.gflops_256:g} GFLOPs per 256x256 frame" if entry.gflops_256 else ""
    frames = ""
    if entry.pretraining_frames and f"{entry.pretraining_frames:,}" not in entry.pretraining_data:
        frames = f" ({entry.pretraining_frames:,} frames)"
    sections = [
        _metadata(entry, task, extra),
        f"# {title}\n",
        f"{entry.description}\n" + (TASK_NOTE if task else ""),
        "## Architecture\n",
        f"- Backbone: `{entry.arch}` ({entry.family}), {params}{flops}",
        f"- Input: RGB, {size[-2]}x{size[-1]} pixels, normalised with mean {_fmt(mean)} and std {_fmt(std)}"
        " (`surgenet.create_transform(model)` does this)",
        f"- Weights: `{entry.repo_id}` / `{entry.filename}` (revision `{entry.revision}`)\n",
    ]
    if task:
        sections.append(_task_section(task, extra))
    sections += [
        "## Pretraining data\n",
        f"{entry.pretraining_data}{frames}. Method: {entry.pretraining_method}, {entry.epochs} epochs, "
        "self-supervised (no labels).\n",
        "## How to use\n",
        _usage(entry, task, extra),
        "## Intended use and limitations\n",
        "- For research on surgical computer vision: feature extraction and fine-tuning for segmentation, "
        "phase recognition and safety assessment in minimally invasive surgery.",
        "- Not a medical device and not validated for clinical decisions; do not use it to guide surgery.",
        ("- Pretrained on endoscopic and laparoscopic video; expect weaker features on other imaging "
         "(open surgery, microscopy, radiology) and on procedures absent from the pretraining data."
         if "ImageNet" not in entry.pretraining_data else
         "- Pretrained on natural images (ImageNet), not on surgical video: a starting point for surgical "
         "pretraining (`surgenet-train pretrain --method msn --config msn-vits16`) or fine-tuning."),
        "- Predictions of task models reflect their fine-tuning data; check them on your own videos first.",
        f"- License: {license_text}."
        + (" Commercial use of the weights is not permitted." if entry.license in _NON_COMMERCIAL else "") + "\n",
        "## Citation\n",
        f"{entry.paper}" + (f" ([doi](https://doi.org/{doi}))" if doi else "") + "\n",
        f"<sub>Card generated by surgenet {__version__}.</sub>\n",
    ]
    return "\n".join(sections)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"
