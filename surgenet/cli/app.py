"""``surgenet app``: the web demo on this machine (Gradio), bound to localhost unless told otherwise.

A surgenet-export folder given with ``--model`` runs with ``--backend auto`` by default: the fastest
backend on this machine whose argmax decisions agree with FP32, chosen once when the app starts
(printed, cached per CPU and model file) and named in the model menu, e.g. ``seg-export
(segmentation, auto → openvino-bf16)``; ``--backend NAME`` runs every export folder with that backend.
"""

from __future__ import annotations

import argparse
import sys

from ..bounds import BOUNDS, bounded


def _port(text: str) -> int:
    """``--port``: a TCP port, the table's ``port`` range (1 to 65535)."""
    try:
        return bounded("port")(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)") from None


_port.bound_name = "port"  # type: ignore[attr-defined]


def upload_bytes(text: str) -> int:
    """``--max-file-size``: 20mb, 500kb, 1gb or a number of bytes."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; give e.g. 20mb, 500kb or 1gb")
    scale = {"b": 1, None: 1, "kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3}[match.group(2)]
    value = int(float(match.group(1)) * scale)
    high = int(BOUNDS["upload_bytes"].high)
    if not 1 <= value <= high:
        raise argparse.ArgumentTypeError(f"must be from 1 byte to {high // 1024 ** 3}gb, got {text!r}")
    return value


upload_bytes.bound_name = "upload_bytes"  # type: ignore[attr-defined]  # its range is in the table of bounds


def is_local(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (loopback)."""
    import ipaddress

    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..backends import AUTO, BACKENDS

    p = subparsers.add_parser("app", help="serve the web demo (extra: app)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", metavar="NAME_OR_DIR",
                   help="a zoo name, a fine-tuned folder or a surgenet-export folder; repeat for several "
                        "(default: surgenetxl-caformer)")
    p.add_argument("--no-pretrained", action="store_true", help="random backbone weights for zoo names (no download)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=7860)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where PyTorch models run (and, for --backend auto, which backends are tried)")
    p.add_argument("--backend", choices=(AUTO, *BACKENDS), metavar="NAME",
                   help="the backend of every surgenet-export --model: auto (the default: the fastest backend here "
                        "whose argmax decisions agree with FP32 on >= 99.5 %% of pixels, chosen once at start-up, "
                        "cached, and named in the model menu) or a registry name that runs an exported model "
                        "(onnxruntime-cpu, openvino-f32, openvino-bf16, openvino-int8 ...); PyTorch models run eager")
    p.add_argument("--threshold", type=bounded("fraction"), default=0.5,
                   help="probability at which a CVS criterion is met and a tool present (default 0.5)")
    p.add_argument("--max-file-size", type=upload_bytes, default="100mb",
                   help="largest upload accepted, e.g. 20mb (default 100mb); larger ones are refused before decoding")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..exceptions import InputError

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda but no CUDA GPU is visible here; use --device cpu.")
    from ..app import ModelCatalog, launch, private_folder
    from ..app.ui import _gradio, build_app

    _gradio()  # the extra is checked before any model is loaded (and the app's private folder made)
    catalog = ModelCatalog(args.model or ["surgenetxl-caformer"], pretrained=not args.no_pretrained,
                           device=args.device, threshold=args.threshold, backend=args.backend,
                           on_choice=lambda choice: print(f"surgenet app: {choice.summary()}", flush=True))
    catalog.warm_up()
    demo = build_app(catalog, max_upload_bytes=args.max_file_size)
    if not is_local(args.host):
        print(f"surgenet app: WARNING: bound to {args.host}, not this machine only: anyone who can reach it can "
              "upload files and run the models (default --host 127.0.0.1).", file=sys.stderr, flush=True)
    print(f"surgenet app: serving on http://{args.host}:{args.port} (Ctrl+C to stop); uploads and outputs in "
          f"{private_folder()}, removed at exit", flush=True)
    launch(demo, host=args.host, port=args.port, max_file_size=args.max_file_size)
    return 0
