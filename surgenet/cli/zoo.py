"""``surgenet list``, ``surgenet info NAME``, ``surgenet download NAME``, ``surgenet cards``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..exceptions import InputError
from ..zoo.registry import REGISTRY, get_entry, list_models
from ..console.checks import output_folder
from ..io.table import format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the released models")
    p.add_argument("pattern", nargs="?", default=None, help="glob, e.g. 'surgenetxl-*'")
    p.add_argument("--family", choices=sorted({e.family for e in REGISTRY.values()}))
    p.set_defaults(func=_list)

    p = sub.add_parser("info", help="show the registry record of a model")
    p.add_argument("name")
    p.set_defaults(func=_info)

    p = sub.add_parser("download", help="fetch released weights into the Hugging Face cache")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--revision", default=None, help="branch, tag or commit to pin")
    p.add_argument("--cache-dir", type=output_folder, default=None, help="Hugging Face cache folder")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.add_argument("--full", action="store_true", help="the full DINO checkpoint instead of the teacher")
    p.set_defaults(func=_download)

    p = sub.add_parser("cards", help="write a model card per zoo entry (model_cards/)")
    p.add_argument("--out", type=output_folder, default=Path("model_cards"))
    p.add_argument("--check", action="store_true", help="fail if the cards on disk differ from the registry")
    p.set_defaults(func=_cards)


def _list(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models(args.pattern, family=args.family):
        e = REGISTRY[name]
        rows.append([name, e.arch, "x".join(map(str, e.input_size[1:])), f"{e.num_params / 1e6:.1f}M",
                     e.pretraining_data.split(":")[0], e.license])
    print(format_table(["name", "arch", "input", "params", "pretraining data", "license"], rows))
    return 0


def _info(args: argparse.Namespace) -> int:
    entry = get_entry(args.name).to_dict()
    rows = [[k, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)] for k, v in entry.items()]
    print(format_table(["field", "value"], rows))
    return 0


def _download(args: argparse.Namespace) -> int:
    from ..zoo.hub import download_weights

    entries = [get_entry(name) for name in args.names]
    if args.full:
        without = [e.name for e in entries if e.full_checkpoint is None]
        if without:
            raise InputError(f"no full DINO checkpoint is released for {', '.join(without)}: only the teacher "
                             "weights. Drop --full to download those.")
    for entry in entries:
        name = entry.name
        filename = entry.full_checkpoint if args.full else None
        path = download_weights(entry, revision=args.revision, cache_dir=args.cache_dir,
                                force_download=args.force, filename=filename)
        print(f"{name}: {path}")
    return 0


def _cards(args: argparse.Namespace) -> int:
    from ..zoo.card_files import write_zoo_cards

    stale = write_zoo_cards(args.out, check=args.check)
    if args.check and stale:
        print("model cards differ from the registry; run `surgenet cards`: " + ", ".join(stale))
        return 1
    print(f"{len(REGISTRY)} model cards {'checked' if args.check else 'written'} in {args.out}")
    return 0
