"""``surgenet batch`` and ``surgenet embed``: a model over a whole video archive, resumable.

The input is a folder tree (every video, and every folder of frames, below it) or a manifest CSV
with a ``path`` column. Per input, outputs as ``surgenet predict`` writes them (``OUT/<id>/``);
for the run, one Parquet table (``OUT/predictions.parquet`` or ``OUT/embeddings.parquet``);
unreadable inputs in ``OUT/failures.csv`` (status ``failed``), with videos that end before the
frames their container announces (status ``partial``: their rows are kept). Exit code 1 when any
input is listed there, 2 when no input could be read at all. Running the same command again skips what is done.
``--engine ray`` runs the same job on Ray Data (a local instance, or a cluster at ``--address``).

``--model`` may be a surgenet-export folder (segmentation, CVS, tools): its backend is by default
``auto``, the fastest backend on this machine whose argmax decisions agree with FP32 (as in
``surgenet predict``), chosen once before any input is read, printed, recorded in ``OUT/run.json``
and in the table's metadata, and opened by every worker; ``--backend NAME`` names one instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..tasks import TASKS
from ..console.checks import add_backend_auto_options, device_name, existing_path, model_reference, output_folder
from ..bounds import bounded
from ..backends import AUTO, BACKENDS
from ..runtime.registry import backend_names

TORCH_BACKENDS = tuple(backend_names(aliases=True, artefact="model"))  # what runs a PyTorch model
EXPORT_BACKENDS = tuple(n for n in backend_names() if n not in TORCH_BACKENDS)  # what runs an export folder


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=existing_path, help="archive folder, manifest CSV (column 'path') or one video")
    p.add_argument("--model", required=True, type=model_reference,
                   help="zoo name (surgenet list), a folder written by save_pretrained / surgenet-train, or "
                        "(surgenet batch) a surgenet-export folder")
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
    p.add_argument("--backend", choices=(AUTO, *BACKENDS), metavar="NAME",
                   help="a backend of the registry (the names of surgenet predict): for a PyTorch model one of "
                        + ", ".join(TORCH_BACKENDS[:4]) + " ... (default torch-eager-fp32; segmentation, CVS and "
                        "tools); for a surgenet-export folder one of " + ", ".join(EXPORT_BACKENDS[:6]) + " ... or "
                        "auto, the default: the fastest backend here whose argmax decisions agree with FP32 on "
                        ">= 99.5 %% of pixels, measured once per CPU, model file, input size and thread count "
                        "(cached), chosen once before any input and used by every worker")
    add_backend_auto_options(p)
    p.set_defaults(func=run_batch)
    e = subparsers.add_parser("embed", help="per-frame backbone embeddings of a video archive, to Parquet",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(e)
    e.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="embedding precision")
    e.add_argument("--near-duplicates", type=bounded("fraction"), metavar="THRESHOLD",
                   help="list frame pairs whose cosine similarity is at least THRESHOLD (near_duplicates.csv)")
    e.set_defaults(func=run_embed)


def _run(args: argparse.Namespace, mode: str, **job_options) -> int:
    from ..backends import check_backend, check_runs_here, is_export_folder, runs_eager
    from ..batch import BatchJob, ModelSpec, run_job
    from ..exceptions import InputError
    from ..runtime.registry import REFERENCE

    if args.engine == "local" and args.address:
        raise InputError("--address is for --engine ray; add --engine ray or drop --address.")
    device = args.device if args.engine == "local" else "cpu"
    exported = is_export_folder(args.model)
    if exported:
        _check_export_options(args)
    backend = check_backend(args.model, getattr(args, "backend", None))  # AUTO by default for an export folder
    auto_frames, rebenchmark = getattr(args, "auto_frames", None), getattr(args, "rebenchmark", False)
    if backend != AUTO and (auto_frames is not None or rebenchmark):
        raise InputError("--auto-frames and --rebenchmark go with --backend auto (an export folder without "
                         f"--backend); this run uses {backend}.")
    if backend not in (AUTO, REFERENCE):
        check_runs_here(backend, device)
        if not exported and not runs_eager(backend) and mode in ("phase", "embed"):
            raise InputError(f"--backend {backend} runs a model's logits, and {mode} outputs embeddings, which the "
                             "eager model gives: drop --backend.")
    spec = ModelSpec(backend=backend, model=args.model, mode=mode, num_classes=getattr(args, "num_classes", None),
                     weights=str(args.weights) if args.weights else None, pretrained=not args.no_pretrained,
                     device=device)
    job = BatchJob(source=str(args.input), spec=spec, out=str(args.out), fps=args.fps,
                   batch_size=args.batch_size, auto_frames=str(auto_frames) if auto_frames else None,
                   rebenchmark=rebenchmark, **job_options)
    report = run_job(job, engine=args.engine, workers=args.workers, address=args.address,
                     on_choice=lambda choice: print(choice.summary(), flush=True))
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


def _check_export_options(args: argparse.Namespace) -> None:
    """An export folder carries its weights, classes and task: the options of a PyTorch model are refused
    (phase and embed, which need the PyTorch model, are refused by ModelSpec)."""
    from ..exceptions import InputError

    given = [flag for flag, value in (("--weights", args.weights), ("--no-pretrained", args.no_pretrained),
                                      ("--num-classes", getattr(args, "num_classes", None))) if value]
    if given:
        raise InputError(f"{args.model} is an exported model, which carries its weights and classes; "
                         f"drop {', '.join(given)}.")


def run_batch(args: argparse.Namespace) -> int:
    from ..backends import is_export_folder
    from .zoo_flags import check_zoo_flags

    mode = args.task
    if is_export_folder(args.model):
        from ..exceptions import InputError
        from ..runtime.metadata import read_export_config

        task = read_export_config(args.model).get("task")
        if mode is not None and mode != task:
            raise InputError(f"{args.model} was exported for {task}, not {mode}; drop --task or pick another model.")
        return _run(args, task)
    check_zoo_flags(args.model, mode, getattr(args, "num_classes", None))
    return _run(args, mode if mode is not None else saved_task(args.model))


def saved_task(model: str) -> str | None:
    """The task recorded in the ``config.json`` of a save_pretrained folder or of a Hub repo (read
    through the Hugging Face cache)."""
    import json
    from pathlib import Path

    from ..io.text import read_user_text
    from ..models.base import snapshot_folder
    from ..models.loading import model_source

    folder = snapshot_folder(model) if model_source(model) == "hub" else Path(model).expanduser()
    return json.loads(read_user_text(folder / "config.json")).get("task")


def run_embed(args: argparse.Namespace) -> int:
    return _run(args, "embed", dtype=args.dtype, near_duplicates=args.near_duplicates)
