"""The main job of `make demo`: export a SurgeNetXL segmentation model, check it, benchmark it,
and predict on the shipped sample frame, through the same commands a user runs.

Released weights are used when they are in the Hugging Face cache; otherwise the backbone is
random, and the run says so plainly (shapes, parity and speed are still real; the masks are not).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import surgenet
from surgenet.hub import cached_weights_path
from surgenet.registry import get_entry

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "surgenet" / "assets" / "sample_frame.png"
BIN = Path(sys.executable).parent


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run(args: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run(args, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="surgenetxl-caformer")
    parser.add_argument("--num-classes", type=int, default=13, help="13: the CholecSeg8k classes")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    step("1. model")
    pretrained = cached_weights_path(get_entry(args.model)) is not None
    if pretrained:
        print(f"{args.model}: released backbone weights from the Hugging Face cache; the FPN head is "
              "untrained (fine-tune it with surgenet-train finetune).")
    else:
        print(f"NOTICE: the released weights of {args.model} are not in the Hugging Face cache "
              f"(`surgenet download {args.model}` where there is network). Using RANDOM weights: "
              "export, parity and speed below are real, the predicted masks are meaningless.")
    model = surgenet.load_model(args.model, task="segmentation", num_classes=args.num_classes, pretrained=pretrained)
    model_dir = out / "model"
    model.save_pretrained(model_dir)
    print(f"saved to {model_dir} (config.json, model.safetensors, README.md)")

    step("2. export to ONNX and check it against PyTorch")
    export_dir = out / "export"
    run([str(BIN / "surgenet-export"), str(model_dir), "--task", "segmentation", "--onnx", "--dynamic",
         "--out", str(export_dir)])
    report = json.loads((export_dir / "model.onnx.json").read_text())
    print(json.dumps(report.get("parity", report), indent=1)[:1500])

    step("3. latency, backend by backend")
    run([sys.executable, str(REPO / "benchmarks" / "latency.py"), "--model", str(model_dir), "--task", "segmentation",
         "--imgsz", str(args.imgsz), "--batch", "1", "--warmup", "2", "--iters", str(args.iters),
         "--backends", "torch-eager-fp32", "onnxruntime-cpu", "openvino-f32", "openvino-bf16",
         "--json", str(out / "latency.json"), "--plot", str(out / "latency.png")])

    step("4. predict on the sample frame (PyTorch and the exported ONNX model)")
    run([str(BIN / "surgenet"), "predict", "--model", str(model_dir), "--task", "segmentation",
         str(SAMPLE), "--out", str(out / "predict")])
    from surgenet_export import load_runner

    frame = np.asarray(Image.open(SAMPLE).convert("RGB"))
    torch_result = surgenet.Predictor(model).predict(frame)
    onnx_result = surgenet.Predictor(load_runner(export_dir / "model.onnx")).predict(frame)
    agreement = float((torch_result.class_map == onnx_result.class_map).mean())
    Image.fromarray(onnx_result.overlay()).save(out / "overlay_onnx.png")
    print(f"frame {frame.shape[1]}x{frame.shape[0]}: class map {onnx_result.class_map.shape}, "
          f"ONNX vs PyTorch pixel agreement {agreement:.4%}; overlay: {out / 'overlay_onnx.png'}")
    print(f"\nDone. Everything is in {out}/" + ("" if pretrained else " (random weights, see the notice above)"))


if __name__ == "__main__":
    main()
