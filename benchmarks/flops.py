"""FLOPs per frame of every zoo backbone (multiply-add = 2 FLOPs), the figures in the registry.

    python benchmarks/flops.py [--imgsz 256] [--names surgenetxl-caformer ...]

Counted with torch.utils.flop_counter on the eager graph with timm's fused attention off
(TIMM_FUSED_ATTN=0), because the counter does not see inside fused attention kernels.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TIMM_FUSED_ATTN", "0")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import surgenet  # noqa: E402
from surgenet.console import CommandParser  # noqa: E402
from surgenet.bounds import bounded  # noqa: E402
from surgenet.io.table import format_table  # noqa: E402
from surgenet.zoo.registry import REGISTRY  # noqa: E402


def backbone_gflops(name: str, imgsz: int = 256) -> float:
    """GFLOPs of one ``imgsz`` x ``imgsz`` frame through the backbone's feature maps."""
    bb = surgenet.load_backbone(name, pretrained=False).eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        bb(torch.randn(1, 3, imgsz, imgsz))
    return counter.get_total_flops() / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgsz", type=bounded("image_side"), default=256)
    parser.add_argument("--names", nargs="*", default=None)
    args = parser.parse_args(argv)
    rows = []
    for name in args.names or surgenet.list_models():
        measured = backbone_gflops(name, args.imgsz)
        recorded = REGISTRY[name].gflops_256
        rows.append([name, f"{measured:.2f}", "-" if recorded is None else f"{recorded:g}"])
    print(format_table(["name", f"GFLOPs @{args.imgsz}", "registry @256"], rows))


if __name__ == "__main__":
    main()
