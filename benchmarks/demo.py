"""The main job of `make demo`: SurgeNetXL features on the sample frame (more steps arrive with the heads)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import surgenet
from surgenet.hub import cached_weights_path
from surgenet.registry import get_entry

SAMPLE = Path(__file__).resolve().parents[1] / "surgenet" / "assets" / "sample_frame.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="surgenetxl-caformer")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    cached = cached_weights_path(get_entry(args.model))
    if cached is not None:
        bb = surgenet.load_backbone(args.model, weights=cached)
        print(f"[demo] {args.model}: released weights from the Hugging Face cache ({cached})")
    else:
        print(f"[demo] NOTICE: the released weights of {args.model} are not in the Hugging Face cache "
              f"(run `surgenet download {args.model}` where there is network); using RANDOM weights, "
              "so the numbers below show shapes and speed, not quality.")
        bb = surgenet.load_backbone(args.model, pretrained=False)
    bb.eval()
    info = surgenet.model_info(args.model)
    size = info["input_size"][1:]
    frame = Image.open(SAMPLE).convert("RGB") if SAMPLE.is_file() else Image.new("RGB", (640, 360), (120, 40, 40))
    x = np.asarray(frame.resize(size[::-1], Image.BILINEAR), dtype=np.float32) / 255.0
    x = (x - np.array(info["mean"], dtype=np.float32)) / np.array(info["std"], dtype=np.float32)
    tensor = torch.from_numpy(x).permute(2, 0, 1)[None]
    with torch.inference_mode():
        bb(tensor)
        start = time.perf_counter()
        feats = bb(tensor)
        ms = (time.perf_counter() - start) * 1e3
    for f, r in zip(feats, bb.feature_info.reduction()):
        print(f"[demo] stride {r:>2}: {tuple(f.shape)}")
    print(f"[demo] one frame through the backbone: {ms:.1f} ms (eager FP32, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
