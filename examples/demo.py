"""The main job of `make demo`, through the same calls and commands a user runs:

1. weights: the released weights of the demo models are downloaded through huggingface_hub when
   the Hub answers (a short connection timeout, the hub's progress bar, the licence notice);
   offline, behind a proxy or with HF_HUB_OFFLINE=1 one line says so and the backbone is random.
2. features: what the foundation models see on a real Endoscapes frame: the first three principal
   components of the patch features as RGB, for the CAFormer and a DINOv2 ViT, beside the frame.
3. a segmentation model on the CAFormer, saved with save_pretrained;
4. exported to ONNX and checked against PyTorch;
5. latency, backend by backend;
6. predict on the real frame (PyTorch and the exported ONNX model).

With random weights, shapes, parity and speed are still real; the pictures and masks are not.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import surgenet
from surgenet.exceptions import SurgeNetError
from surgenet.label_sets import ENDOSCAPES_CLASSES
from surgenet.patch_features import DEFAULT_SHORT_SIDE
from surgenet.zoo.hub import cached_weights_path, download_weights, license_notice
from surgenet.zoo.registry import get_entry
from surgenet.samples import endoscapes_frame
from surgenet.console import CommandParser
from surgenet.bounds import bounded
from surgenet.console.checks import output_folder

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEPS = ("features", "export", "latency", "predict")
FIGURE_HEIGHT = 300  # the overview figure; each model's picture is also saved at the frame's size


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run(args: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run(args, check=True)


def hub_unreachable(timeout: float) -> str | None:
    """``None`` when the Hugging Face Hub answers within ``timeout`` seconds, else why not."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1 is set"
    try:
        response = get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - one probe call: any failure (DNS, proxy, TLS, timeout) means unreachable
        return f"{constants.ENDPOINT} is not reachable ({type(exc).__name__}: {str(exc)[:80]})"
    if response.status_code >= 400:
        return f"{constants.ENDPOINT} answered HTTP {response.status_code} (a proxy?)"
    return None


@dataclass
class Weights:
    name: str
    pretrained: bool
    note: str  # one line: where the weights came from, or why they are random


def fetch_weights(name: str, unreachable: str | None) -> Weights:
    """The released weights of ``name``: from the Hub (progress bar), from the cache, or none."""
    entry = get_entry(name)
    if unreachable is not None:
        cached = cached_weights_path(entry)
        if cached is not None:
            return Weights(name, True, f"{name}: released weights from the Hugging Face cache ({cached}).")
        return Weights(name, False, f"{name}: not in the Hugging Face cache: RANDOM weights.")
    from huggingface_hub.errors import HfHubHTTPError

    try:
        path = download_weights(entry)  # huggingface_hub shows its progress bar while downloading
    except (SurgeNetError, HfHubHTTPError) as exc:
        return Weights(name, False, f"{name}: download failed ({str(exc).splitlines()[0][:160]}): RANDOM weights.")
    return Weights(name, True, f"{name}: released weights from the Hugging Face Hub "
                               f"({entry.repo_id}/{entry.filename}, cached at {path}).")


def feature_pictures(names: list[str], weights: dict[str, Weights], frame_path: Path, out: Path,
                     short_side: int) -> Path:
    """The PCA picture of each backbone on the frame, and one figure: frame | one per model."""
    from surgenet.patch_features import load_feature_extractor
    from surgenet.io import read_image
    from surgenet.visualize import feature_pca, save_png, side_by_side

    frame = read_image(frame_path)
    panels: list[tuple[str, np.ndarray]] = [(f"Endoscapes frame {frame_path.name}", frame)]
    for name in names:
        start = time.perf_counter()
        extractor = load_feature_extractor(name, pretrained=weights[name].pretrained)
        picture = feature_pca(extractor, frame, short_side=short_side)
        save_png(picture, out / f"features_{name}.png")
        kind = "released weights" if weights[name].pretrained else "RANDOM weights: meaningless"
        panels.append((f"{name}, {extractor.layer_description} ({kind})", picture))
        print(f"{name} ({extractor.layer_description}): {time.perf_counter() - start:.1f} s -> "
              f"{out / f'features_{name}.png'}", flush=True)
    figure = save_png(side_by_side(panels, height=FIGURE_HEIGHT), out / "features.png")
    print(f"overview (frame | PCA of each model's patch features, {FIGURE_HEIGHT} px high): {figure}")
    if not all(weights[n].pretrained for n in names):
        print("NOTICE: RANDOM weights: these pictures show an untrained network and mean nothing; with the "
              "released weights they show what the model learned.")
    return figure


def main(argv: list[str] | None = None) -> int:
    # Before huggingface_hub is first imported (only inside the steps): a Hub that does not answer
    # costs seconds, not minutes.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    parser = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="surgenetxl-caformer", help="the segmentation model's backbone")
    parser.add_argument("--vit", default="surgenetxl-dinov2-vits14", help="a DINO ViT of the zoo; 'none' skips it")
    parser.add_argument("--frame", type=Path, default=endoscapes_frame(),
                        help="default: a real Endoscapes2023 frame shipped with the package")
    parser.add_argument("--feature-size", type=bounded("image_side"), default=DEFAULT_SHORT_SIDE,
                        help="input pixels on the frame's short side for the feature pictures")
    parser.add_argument("--num-classes", type=bounded("num_classes"), default=7, help="7: the Endoscapes classes")
    parser.add_argument("--imgsz", type=bounded("image_side"), default=256)
    parser.add_argument("--iters", type=bounded("iterations"), default=10)
    parser.add_argument("--hub-timeout", type=bounded("seconds"), default=5.0, help="seconds to wait for the Hub to answer")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--out", type=output_folder, default="out/demo")
    args = parser.parse_args(argv)
    if not args.frame.is_file():
        parser.error(f"--frame {args.frame} does not exist; give an image file.")
    torch.manual_seed(0)  # random weights, where used, are the same on every run
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    names = [args.model] + ([args.vit] if args.vit.lower() != "none" else [])
    for name in names:
        get_entry(name)  # an unknown name fails now, not after minutes

    step("1. weights")
    unreachable = hub_unreachable(args.hub_timeout)
    if unreachable is not None:
        print(f"NOTICE: not downloading the released weights: {unreachable}; using the Hugging Face cache, "
              "else random weights.")
    weights = {name: fetch_weights(name, unreachable) for name in names}
    for w in weights.values():
        print(w.note)
    for name in [n for n in names if weights[n].pretrained]:
        print("Licence: " + license_notice(get_entry(name)))
    if not all(w.pretrained for w in weights.values()):
        print("NOTICE: RANDOM weights where noted above: export, parity and speed below are real, the pictures and "
              "masks of those models are meaningless. Where there is network: `surgenet download NAME`.")
    pretrained = weights[args.model].pretrained

    if "features" in args.steps:
        step(f"2. what the backbones see on a real frame ({args.frame.name})")
        feature_pictures(names, weights, args.frame, out, args.feature_size)

    model_dir = out / "model"
    export_dir = out / "export"
    if {"export", "latency", "predict"} & set(args.steps):
        step("3. segmentation model")
        class_names = list(ENDOSCAPES_CLASSES) if args.num_classes == len(ENDOSCAPES_CLASSES) else None
        model = surgenet.load_model(args.model, task="segmentation", num_classes=args.num_classes,
                                    pretrained=pretrained, class_names=class_names)
        model.save_pretrained(model_dir)
        print(f"{args.model} + FPN head (untrained: fine-tune it with surgenet-train finetune), saved to "
              f"{model_dir} (config.json, model.safetensors, README.md)")

    if {"export", "predict"} & set(args.steps):
        step("4. export to ONNX and check it against PyTorch")
        run([str(BIN / "surgenet-export"), str(model_dir), "--task", "segmentation", "--onnx", "--dynamic",
             "--out", str(export_dir)])
        report = json.loads((export_dir / "model.onnx.json").read_text())
        print(json.dumps(report.get("parity", report), indent=1)[:1500])

    if "latency" in args.steps:
        step("5. latency, backend by backend")
        run([sys.executable, str(REPO / "benchmarks" / "latency.py"), "--model", str(model_dir), "--task",
             "segmentation", "--imgsz", str(args.imgsz), "--batch", "1", "--warmup", "2", "--iters", str(args.iters),
             "--backends", "torch-eager-fp32", "onnxruntime-cpu", "openvino-f32", "openvino-bf16",
             "--json", str(out / "latency.json"), "--plot", str(out / "latency.png")])

    if "predict" in args.steps:
        step(f"6. predict on the real frame {args.frame.name} (PyTorch and the exported ONNX model)")
        run([str(BIN / "surgenet"), "predict", "--model", str(model_dir), "--task", "segmentation",
             str(args.frame), "--out", str(out / "predict")])
        from PIL import Image
        from surgenet_export import load_runner

        frame = np.asarray(Image.open(args.frame).convert("RGB"))
        torch_result = surgenet.Predictor(model).predict(frame)
        onnx_result = surgenet.Predictor(load_runner(export_dir / "model.onnx")).predict(frame)
        agreement = float((torch_result.class_map == onnx_result.class_map).mean())
        Image.fromarray(onnx_result.overlay()).save(out / "overlay_onnx.png")
        print(f"frame {frame.shape[1]}x{frame.shape[0]}: class map {onnx_result.class_map.shape}, "
              f"ONNX vs PyTorch pixel agreement {agreement:.4%}; overlay: {out / 'overlay_onnx.png'} "
              "(untrained head: the masks are not a result)")

    step("done")
    for w in weights.values():
        print(f"{w.name}: " + ("released weights" if w.pretrained else "RANDOM weights (see the notice above)"))
    print(f"Everything is in {out}/; start with {out / 'features.png'}" if "features" in args.steps
          else f"Everything is in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
