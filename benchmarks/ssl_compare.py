"""DINO, BYOL, SimCLR and MSN side by side on real surgical frames, for the same CPU time.

Each method pretrains the same small ViT from random weights on the unlabelled frames of
``--data`` (Endoscapes train images, CholecT50 VID68 + VID70 frames, frames decoded from the
clips at 1 fps) until this process has used ``--cpu-budget`` seconds of CPU time
(``time.process_time``: fair on a machine shared with other work, data loading included). Its
backbone (the EMA teacher where the method has one) is then probed, frozen, with kNN (k=20) and a
linear classifier on CholecT50 phase (VID68 + VID70 -> VID73) and Endoscapes CVS (train -> val,
criterion c >= 0.5, mean balanced accuracy of C1..C3). Random weights are the baseline row.

    python benchmarks/ssl_compare.py --data data/ --cpu-budget 120 --out runs/ssl_compare

A small-scale replica: full-scale comparisons (224 px, ViT-S or ResNet-50, hundreds of epochs)
need GPUs. Results go to OUT/results.json and a Markdown table on stdout.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from surgenet.io.atomic import atomic_write_text
from surgenet.train.methods import METHODS
from surgenet.console import CommandParser
from surgenet.bounds import bounded
from surgenet.console.checks import output_folder

IMAGE = 64  # pixels of every pretraining view and probe image (the small budget)
# The same backbone for all: a 6-block ViT-Tiny with 8 px patches (MSN needs patch tokens).
NETWORK = "model.network_kwargs={patch_size: 8, depth: 6, img_size: 64}"
COMMON = ["model.name=vit_tiny_patch16_224", NETWORK, "model.drop_path_rate=0.0", "train.precision=fp32",
          "train.batch_size=32", "train.epochs=4", "optim.warmup_epochs=1", "train.log_every=1000000",
          "train.checkpoint_every=0", "data.num_workers=0", "optim.lr=1.5e-3", "optim.min_lr=1e-5",
          "optim.weight_decay=0.04", "optim.weight_decay_end=0.1", "optim.clip_grad=3.0"]
PER_METHOD = {
    "dino": ["crops.global_size=64", "crops.local_size=32", "crops.local_crops=4", "head.out_dim=1024",
             "head.hidden_dim=512", "head.bottleneck_dim=128", "optim.momentum_teacher=0.99",
             "loss.warmup_teacher_temp=0.04"],
    "byol": ["byol.view_size=64", "byol.hidden_dim=512", "byol.projection_dim=128", "optim.momentum_teacher=0.99"],
    "simclr": ["simclr.view_size=64", "simclr.hidden_dim=512", "simclr.projection_dim=128", "simclr.temperature=0.2"],
    "msn": ["msn.random_size=64", "msn.focal_size=32", "msn.focal_views=4", "msn.hidden_dim=512",
            "msn.projection_dim=128", "msn.num_prototypes=256", "optim.momentum_teacher=0.99"],
}


def unlabelled_sources(data: Path, scratch: Path) -> list[str]:
    from surgenet.train.data import extract_frames

    clips = scratch / "clip_frames"
    for clip in sorted((data / "clips").glob("*.mp4")):
        extract_frames(clip, clips / clip.stem, fps=1.0)
    sources = [data / "endoscapes/train/images", data / "cholect50/videos/VID68", data / "cholect50/videos/VID70",
               clips]
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise SystemExit(f"ssl_compare: missing data {missing}; pass --data pointing at the shared data folder.")
    return [str(s) for s in sources]


# ---------------------------------------------------------------- labelled sets
def phase_split(data: Path, videos: list[str]) -> tuple[list[str], np.ndarray]:
    """CholecT50 frames with their phase, through surgenet.train.formats when it is there."""
    try:
        from surgenet.train.formats import open_dataset

        ds = open_dataset(f"cholect50:{data / 'cholect50'}#{','.join(videos)}", "phase")
        return [str(p) for p in ds.paths], np.array([ds.target(i) for i in range(len(ds))], np.int64)
    except ImportError:
        paths, labels = [], []
        for video in videos:
            annotations = json.loads((data / f"cholect50/labels/{video}.json").read_text())["annotations"]
            for frame, rows in sorted(annotations.items(), key=lambda kv: int(kv[0])):
                path = data / f"cholect50/videos/{video}/{int(frame):06d}.jpg"
                if rows and path.is_file() and rows[0][14] >= 0:
                    paths.append(str(path))
                    labels.append(int(rows[0][14]))
        return paths, np.array(labels, np.int64)


def cvs_split(data: Path, split: str) -> tuple[list[str], np.ndarray]:
    """Endoscapes frames with the three CVS criteria as 0/1 (mean of 3 raters >= 0.5)."""
    try:
        from surgenet.train.formats import open_dataset

        ds = open_dataset(f"endoscapes:{data / 'endoscapes' / split}", "cvs")
        targets = np.stack([np.asarray(ds.target(i), np.float32) for i in range(len(ds))])
        return [str(p) for p in ds.paths], (targets >= 0.5).astype(np.int64)
    except ImportError:
        import csv

        root = data / "endoscapes" / split
        with (root / "cvs.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        paths = [str(root / "images" / r["file"]) for r in rows]
        return paths, np.array([[float(r[c]) >= 0.5 for c in ("c1", "c2", "c3")] for r in rows], np.int64)


# ---------------------------------------------------------------- pretraining for a CPU budget
def pretrain_for(method: str, sources: list[str], out: Path, budget: float) -> tuple[torch.nn.Module, dict]:
    from surgenet.train import distributed as D
    from surgenet.train.config import load_config
    from surgenet.train.pretrain import Pretrainer

    overrides = [f"method={method}", "data.sources=" + json.dumps(sources), *COMMON, *PER_METHOD[method]]
    config = load_config("tiny", overrides)
    start = time.process_time()
    trainer = Pretrainer(config, out)
    steps, losses = 0, []
    wall = time.perf_counter()
    for crops, _ in trainer.loader(trainer.total_steps):
        losses.append(trainer.train_step(crops)["loss"])
        trainer.step += 1
        steps += 1
        if time.process_time() - start >= budget:
            break
    cpu = time.process_time() - start
    D.shutdown()
    stats = {"steps": steps, "images": steps * config.train.batch_size, "cpu_s": round(cpu, 1),
             "wall_s": round(time.perf_counter() - wall, 1),
             "images_per_cpu_s": round(steps * config.train.batch_size / cpu, 2),
             "loss_first": round(float(np.mean(losses[:5])), 4), "loss_last": round(float(np.mean(losses[-5:])), 4)}
    return trainer.method.result_backbone().eval(), stats


def random_backbone() -> torch.nn.Module:
    from surgenet.zoo.backbones import FeatureBackbone, create_network

    torch.manual_seed(0)
    return FeatureBackbone(create_network("vit_tiny_patch16_224", patch_size=8, depth=6, img_size=64),
                           "vit_tiny_patch16_224").eval()


# ---------------------------------------------------------------- probes
def load_images(sets: dict) -> dict:
    """Every probe image decoded and resized once (the transform of evaluation.extract_features)."""
    from surgenet.zoo.registry import IMAGENET_MEAN, IMAGENET_STD
    from surgenet.transforms import ImageTransform

    transform = ImageTransform((IMAGE, IMAGE), IMAGENET_MEAN, IMAGENET_STD)
    return {task: tuple((transform.batch(paths), labels) for paths, labels in splits) for task, splits in sets.items()}


def probe(backbone: torch.nn.Module, sets: dict) -> dict[str, float]:
    from surgenet.evaluation.probes import accuracy_report, knn_classify, linear_probe

    @torch.no_grad()
    def feats(images):
        return torch.cat([backbone.forward_embedding(images[i:i + 64]).float() for i in range(0, len(images), 64)])

    result = {}
    (ptr, ytr), (pva, yva) = sets["phase"]
    ftr, fva = feats(ptr), feats(pva)
    ytr_t, yva_t = torch.from_numpy(ytr), torch.from_numpy(yva)
    k = int(max(ytr.max(), yva.max())) + 1
    result["phase_knn_top1"] = accuracy_report(knn_classify(ftr, ytr_t, fva, k, k=20), yva_t, k)["top1"]
    result["phase_linear_top1"] = accuracy_report(linear_probe(ftr, ytr_t, fva, k), yva_t, k)["top1"]
    (ctr, ztr), (cva, zva) = sets["cvs"]
    gtr, gva = feats(ctr), feats(cva)
    knn, lin = [], []
    for c in range(3):
        a, b = torch.from_numpy(ztr[:, c]), torch.from_numpy(zva[:, c])
        knn.append(accuracy_report(knn_classify(gtr, a, gva, 2, k=20), b, 2)["balanced_accuracy"])
        lin.append(accuracy_report(linear_probe(gtr, a, gva, 2), b, 2)["balanced_accuracy"])
    result["cvs_knn_bacc"], result["cvs_linear_bacc"] = float(np.mean(knn)), float(np.mean(lin))
    return {key: round(value, 4) for key, value in result.items()}


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="a data folder with endoscapes/, cholect50/ and clips/")
    parser.add_argument("--cpu-budget", required=True, type=bounded("seconds"), help="CPU seconds of pretraining per method")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--out", type=output_folder, default=None, help="folder for the runs and results.json")
    args = parser.parse_args(argv)
    if args.cpu_budget <= 0:
        parser.error("--cpu-budget must be positive (seconds of CPU time per method)")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # one core per run: the CPU budget means the same work on a shared machine
    out = args.out or Path(tempfile.mkdtemp(prefix="ssl_compare_"))
    out.mkdir(parents=True, exist_ok=True)
    sources = unlabelled_sources(args.data, out)
    sets = {"phase": (phase_split(args.data, ["VID68", "VID70"]), phase_split(args.data, ["VID73"])),
            "cvs": (cvs_split(args.data, "train"), cvs_split(args.data, "val"))}
    images = load_images(sets)
    rows = {"random init": {"steps": 0, "images_per_cpu_s": None, **probe(random_backbone(), images)}}
    print(f"random init: {rows['random init']}", file=sys.stderr)
    for method in methods:
        backbone, stats = pretrain_for(method, sources, out / method, args.cpu_budget)
        rows[method] = {**stats, **probe(backbone, images)}
        print(f"{method}: {rows[method]}", file=sys.stderr)
    result = {"cpu_budget_s": args.cpu_budget, "image_size": IMAGE, "backbone": "vit_tiny_patch16_224 "
              "(6 blocks, 8 px patches)", "threads": torch.get_num_threads(), "rows": rows,
              "phase_frames": [len(sets["phase"][0][0]), len(sets["phase"][1][0])],
              "cvs_frames": [len(sets["cvs"][0][0]), len(sets["cvs"][1][0])], "command": " ".join(sys.argv)}
    atomic_write_text(out / "results.json", json.dumps(result, indent=2) + "\n")
    print("| method | steps | images / CPU s | phase kNN top-1 | phase linear top-1 | CVS kNN bal. acc. | "
          "CVS linear bal. acc. |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        ips = "-" if r["images_per_cpu_s"] is None else f"{r['images_per_cpu_s']:.1f}"
        print(f"| {name} | {r['steps']} | {ips} | {r['phase_knn_top1']:.3f} | {r['phase_linear_top1']:.3f} | "
              f"{r['cvs_knn_bacc']:.3f} | {r['cvs_linear_bacc']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
