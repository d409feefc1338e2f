"""``surgenet batch`` and ``surgenet embed``: a model over a whole video archive, resumable.

The input is a folder tree (every video, and every folder of frames, below it) or a manifest CSV
with a ``path`` column. Per input, outputs as ``surgenet predict`` writes them (``OUT/<id>/``);
for the run, one Parquet table (``OUT/predictions.parquet`` or ``OUT/embeddings.parquet``);
unreadable inputs in ``OUT/failures.csv`` (status ``failed``), with videos that end before the
frames their container announces (status ``partial``: their rows are kept). Exit code 1 when any
input is listed there, 2 when no input could be read at all. Running the same command again skips what is done.
``--engine ray`` runs the same job on Ray Data (a local instance, or a cluster at ``--address``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..tasks import TASKS
from ..console.checks import device_name, existing_path, model_reference, output_folder
from ..bounds import bounded
from ..runtime.registry import backend_names

TORCH_BACKENDS = tuple(backend_names(aliases=True, artefact="model"))  # batch runs the PyTorch model


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=existing_path, help="archive folder, manifest CSV (column 'path') or one video")
    p.add_argument("--model", required=True, type=model_reference,
                   help="zoo name (surgenet list) or a folder written by save_pretrained / surgenet-train")
    p.add_argument("--weights", type=existing_path, help="weights for a zoo name (as in surgenet predict)")
    p.add_argument("--no-pretrained", action="store_true", help="random backbone weights (no download)")
    p.add_argument("--out", required=True, type=output_folder, help="output folder (re-run to resume)")
    p.add_argument("--fps", type=bounded("fps"), help="frames per second sampled from videos (default: every frame)")
    p.add_argument("--batch-size", type=bounded("batch_size"), default=8, help="frames per forward pass")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: Ray Data, decoding in tasks, the model in an actor pool")
    p.add_argument("--workers", type=bounded("actors"), default=1, help="ray: model actors (one CPU each)")
    p.add_argument("--address", help="ray: a running cluster (e.g. ray://head:10001 or auto); default: start one here")
    p.add_argument("--device", type=device_name, default="cpu", help="local engine: cpu or cuda")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("batch", help="run a task model over a video archive (Parquet + per-video outputs)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--task", choices=TASKS, help="required with a zoo name")
    p.add_argument("--num-classes", type=bounded("num_classes"), help="classes (segmentation), phases or tools")
    p.add_argument("--backend", choices=TORCH_BACKENDS, metavar="NAME",
                   help="the PyTorch backend of the registry that runs segmentation, CVS and tools models ("
                        + ", ".join(TORCH_BACKENDS) + "; default torch-eager-fp32)")
    p.set_defaults(func=run_batch)
    e = subparsers.add_parser("embed", help="per-frame backbone embeddings of a video archive, to Parquet",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(e)
    e.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="embedding precision")
    e.add_argument("--near-duplicates", type=bounded("fraction"), metavar="THRESHOLD",
                   help="list frame pairs whose cosine similarity is at least THRESHOLD (near_duplicates.csv)")
    e.set_defaults(func=run_embed)


def _run(args: argparse.Namespace, mode: str, **job_options) -> int:
    from ..backends import check_runs_here, runs_eager
    from ..batch import BatchJob, ModelSpec, run_job
    from ..exceptions import InputError
    from ..runtime.registry import REFERENCE, get_backend

    if args.engine == "local" and args.address:
        raise InputError("--address is for --engine ray; add --engine ray or drop --address.")
    backend = get_backend(getattr(args, "backend", None) or REFERENCE).name
    if backend != REFERENCE:
        check_runs_here(backend, args.device if args.engine == "local" else None)
        if not runs_eager(backend) and mode in ("phase", "embed"):
            raise InputError(f"--backend {backend} runs a model's logits, and {mode} outputs embeddings, which the "
                             "eager model gives: drop --backend.")
    spec = ModelSpec(backend=backend, model=args.model, mode=mode, num_classes=getattr(args, "num_classes", None),
                     weights=str(args.weights) if args.weights else None, pretrained=not args.no_pretrained,
                     device=args.device if args.engine == "local" else "cpu")
    job = BatchJob(source=str(args.input), spec=spec, out=str(args.out), fps=args.fps,
                   batch_size=args.batch_size, **job_options)
    report = run_job(job, engine=args.engine, workers=args.workers, address=args.address)
    if report.failed and not report.done and not report.skipped:
        raise InputError(f"no input of {args.input} could be read ({len(report.failed)} failed, see "
                         f"{Path(args.out) / 'failures.csv'}); check that they are complete videos or images.")
    listed = report.failed or report.partial
    print(f"{len(report.done)} input(s) processed ({report.frames} frames), {len(report.skipped)} already done, "
          f"{len(report.failed)} failed, {len(report.partial)} partial{' (see failures.csv)' if listed else ''}"
          f"{f' -> {report.table}' if report.table else ''}")
    if report.duplicates is not None:
        pairs = sum(1 for _ in open(report.duplicates)) - 1
        print(f"{pairs} near-duplicate pair(s) -> {report.duplicates}")
    return 1 if listed else 0  # 1: results are there but incomplete


def run_batch(args: argparse.Namespace) -> int:
    from ..models.loading import model_source

    mode = args.task
    if mode is None:
        if model_source(args.model) == "zoo":
            from ..exceptions import InputError

            raise InputError(f"--task is required with the zoo name {args.model} ({', '.join(TASKS)}).")
        import json
        from pathlib import Path

        from ..io.text import read_user_text

        mode = json.loads(read_user_text(Path(args.model).expanduser() / "config.json")).get("task")
    return _run(args, mode)


def run_embed(args: argparse.Namespace) -> int:
    return _run(args, "embed", dtype=args.dtype, near_duplicates=args.near_duplicates)
