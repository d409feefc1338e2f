"""Serving the demo: the one launch of ``surgenet app`` and of ``app.py`` (a Hugging Face Space).

Gradio serves files through ``/gradio_api/file=PATH``. It serves a file only if the app made it
(an upload, a cached example or output) or if it lies under ``allowed_paths``; by default the
"made" folders are ``$TMPDIR/gradio``, shared by every Gradio app of the machine and its users,
and ``./.gradio/cached_examples`` in the working directory. Here both are folders inside one
private temporary folder of this process (mode 0700, removed at exit), ``allowed_paths`` is empty,
and the working directory and the home folder are blocked, so the server serves the app's own
files and nothing else: no file of the working directory, of the user's home, of another app.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

_FOLDER: Path | None = None
_LOCK = threading.Lock()
# Gradio reads these when it stores an upload or an output (and a few at import).
UPLOADS_ENV, EXAMPLES_ENV = "GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE"


def private_folder() -> Path:
    """This process's private folder of the app (created on the first call, removed at exit):
    ``uploads/`` (Gradio's upload and output cache, ``GRADIO_TEMP_DIR``), ``examples/``
    (``GRADIO_EXAMPLES_CACHE``) and ``clips/`` (the videos the app writes). Call it before
    Gradio is imported, so that every Gradio folder is inside it."""
    global _FOLDER
    with _LOCK:
        if _FOLDER is None or not _FOLDER.is_dir():
            folder = Path(tempfile.mkdtemp(prefix="surgenet-app-")).resolve()  # mode 0700: this user only
            for name in ("uploads", "examples", "clips"):
                (folder / name).mkdir(mode=0o700)
            os.environ[UPLOADS_ENV] = str(folder / "uploads")
            os.environ[EXAMPLES_ENV] = str(folder / "examples")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            _FOLDER = folder
        return _FOLDER


def blocked_paths(folder: Path) -> list[str]:
    """The folders the server must never serve from: the working directory and the home folder
    (each unless it holds the app's own ``folder``, whose files must stay servable; nothing
    outside ``folder`` is allowed then either)."""
    blocked = []
    for path in (Path.cwd(), Path.home()):
        path = path.resolve()
        if folder != path and path not in folder.parents:
            blocked.append(str(path))
    return blocked


def launch(demo: Any, host: str | None = None, port: int | None = None, max_file_size: int | None = None,
           block: bool = True) -> Any:
    """Serve ``demo`` (built by :func:`~surgenet.app.ui.build_app`) with the app's private folder,
    no allowed path and the working directory and home blocked; ``host``/``port`` None take
    Gradio's (``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT``, as a Space sets them, else
    127.0.0.1:7860); ``max_file_size`` None: the page's own limit (100 MB). ``block=False`` returns
    once the server runs (tests); stop it with ``demo.close()``."""
    from .analysis import DEFAULT_MAX_UPLOAD_BYTES

    folder = private_folder()
    if max_file_size is None:
        max_file_size = DEFAULT_MAX_UPLOAD_BYTES
    if threading.current_thread() is threading.main_thread():
        # A service manager (or a test) stops the server with SIGTERM: exit normally, so that the
        # app's folder is removed at exit.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return demo.launch(server_name=host, server_port=port, max_file_size=max_file_size, allowed_paths=[],
                       blocked_paths=blocked_paths(folder), show_error=False, quiet=True,
                       prevent_thread_lock=not block)


__all__ = ["blocked_paths", "launch", "private_folder"]
