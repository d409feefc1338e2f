"""One function run in a fresh child process, so that a library's crash or state cannot reach the caller.

Benchmarks need it: a runtime that dies takes every row measured in its process with it. Under
``ONEDNN_MAX_CPU_ISA=AVX2`` OpenVINO 2026.4 ends in a segmentation fault at its first inference of
a static 224x224 CAFormer graph, alone in its process (no PyTorch imported; the 192, 256 and
256x448 graphs run); in a child it is one "unavailable" line of the table. :func:`call_in_child` runs ``function`` of the Python file
``source`` in a spawned child (a clean interpreter: no PyTorch state, the same environment
variables), returns its result, re-raises its exception, and turns a death by signal into
:class:`ChildCrashed` naming the signal. The function's file is loaded by its path, so scripts
(``benchmarks/*.py``, run as ``__main__`` or loaded by tests) work as well as package modules.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import signal
import sys
from pathlib import Path
from typing import Any


class ChildCrashed(RuntimeError):
    """The child process died without a result (a signal, or an exit without one)."""


def _load(source: str, name: str):
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == source:
        return module
    spec = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look their module up there
    spec.loader.exec_module(module)
    return module


def _child_main(conn, source: str, module_name: str, function: str, kwargs: dict[str, Any]) -> None:
    try:
        result = getattr(_load(source, module_name), function)(**kwargs)
        conn.send(("ok", result))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent, which decides
        try:
            conn.send(("error", exc))
        except Exception:  # an exception that does not pickle goes back as its text
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _signal_name(exitcode: int) -> str:
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def call_in_child(source: str | Path, function: str, timeout: float | None = None, **kwargs: Any) -> Any:
    """``function(**kwargs)`` of the file ``source``, run in a spawned child process.

    Arguments and result travel by pickle (keep them plain: numbers, strings, paths, arrays).
    Raises the child's own exception, :class:`ChildCrashed` when it died (a signal, or no result),
    or :class:`TimeoutError` after ``timeout`` seconds (the child is killed).
    """
    source = str(Path(source).resolve())
    module_name = "surgenet_isolated_" + "".join(c if c.isalnum() else "_" for c in Path(source).stem)
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child_main, args=(send, source, module_name, function, kwargs), daemon=True)
    child.start()
    send.close()  # the parent's copy: recv() sees EOF when the child dies
    try:
        if not receive.poll(timeout):
            child.kill()
            raise TimeoutError(f"{Path(source).name}:{function} did not finish in {timeout:g} s")
        try:
            status, payload = receive.recv()
        except EOFError:
            child.join()
            code = child.exitcode
            how = f"was killed by {_signal_name(code)}" if code is not None and code < 0 else f"exited with code {code}"
            raise ChildCrashed(f"the child process running {function} {how} before giving a result") from None
    finally:
        receive.close()
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    if status == "error":
        raise payload
    return payload


__all__ = ["ChildCrashed", "call_in_child"]
