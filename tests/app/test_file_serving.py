"""The web app's server serves its own files and nothing else.

The real app (:func:`surgenet.app.ui.build_app` over a catalog of random-weight models, served by
:func:`surgenet.app.launch`, the launch of ``surgenet app`` and ``app.py``) on a free localhost
port, asked for files through Gradio's file routes: a file of the working directory, of the home
folder, of the shared temporary folder, ``/etc/passwd`` and paths with ``..`` are refused; an
upload the app stored is served back, byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the web demo needs the app extra: pip install 'surgenet[app]'")

from surgenet.app.serve import blocked_paths, launch, private_folder  # noqa: E402
from tests.helpers.paths import REPO  # noqa: E402

ROUTES = ("/gradio_api/file=", "/file=")
SECRET = b"not for the browser\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost, never a proxy
    try:
        with opener.open(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _upload(base: str, name: str, content: bytes) -> str:
    """POST a file to Gradio's upload route; the path where the app stored it."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{base}/gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        (path,) = json.loads(response.read())
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch

    from surgenet.app import ModelCatalog
    from surgenet.app.ui import build_app

    root = tmp_path_factory.mktemp("serving")
    cwd, home = root / "cwd", root / "home"
    cwd.mkdir()
    home.mkdir()
    (cwd / "secret.txt").write_bytes(SECRET)
    (home / "secret.txt").write_bytes(SECRET)
    # where stock Gradio looks for files it made: ./.gradio/cached_examples and $TMPDIR/gradio
    (cwd / ".gradio" / "cached_examples").mkdir(parents=True)
    (cwd / ".gradio" / "cached_examples" / "secret.txt").write_bytes(SECRET)
    with pytest.MonkeyPatch.context() as monkeypatch:  # the launch reads the cwd and home it blocks
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        torch.manual_seed(0)
        demo = build_app(ModelCatalog(["surgenetxl-caformer"], pretrained=False))
        port = _free_port()
        launch(demo, host="127.0.0.1", port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}", cwd, home
    finally:
        demo.close()


def test_the_apps_folders_are_private_and_gradio_uses_them():
    folder = private_folder()
    assert folder.stat().st_mode & 0o777 == 0o700
    assert os.environ["GRADIO_TEMP_DIR"] == str(folder / "uploads")
    assert os.environ["GRADIO_EXAMPLES_CACHE"] == str(folder / "examples")
    from gradio.utils import get_cache_folder, get_upload_folder

    assert Path(get_upload_folder()) == folder / "uploads" and get_cache_folder() == folder / "examples"


def test_files_outside_the_app_are_refused(server, tmp_path):
    base, cwd, home = server
    outside = Path(tempfile.gettempdir()) / f"surgenet-test-{uuid.uuid4().hex}.txt"
    outside.write_bytes(SECRET)
    shared = Path(tempfile.gettempdir()) / "gradio" / f"surgenet-test-{uuid.uuid4().hex}"  # another app's upload
    shared.mkdir(parents=True)
    (shared / "secret.txt").write_bytes(SECRET)
    uploads = private_folder() / "uploads"
    try:
        for route in ROUTES:
            for path in (cwd / "secret.txt", "secret.txt", home / "secret.txt", "/etc/passwd", outside,
                         shared / "secret.txt", cwd / ".gradio" / "cached_examples" / "secret.txt",
                         ".gradio/cached_examples/secret.txt",
                         f"{uploads}/../../../etc/passwd", f"{uploads}/..%2F..%2F..%2Fetc%2Fpasswd",
                         f"{cwd}/../cwd/secret.txt", "../../../../etc/passwd", f"{uploads}/../cwd-secret"):
                code, body = _get(base + route + urllib.parse.quote(str(path), safe="/%"))
                assert code in (403, 404), (route, path, code)
                assert SECRET not in body and b"root:" not in body
    finally:
        outside.unlink()
        shutil.rmtree(shared)


def test_an_upload_the_app_stored_is_served(server):
    base, _, _ = server
    content = b"\x89PNG\r\n\x1a\n" + os.urandom(64)
    stored = Path(_upload(base, "frame.png", content))
    assert private_folder() in stored.resolve().parents  # the upload is in the app's own folder
    code, body = _get(f"{base}/gradio_api/file={stored}")
    assert code == 200 and body == content


def test_the_example_frames_of_the_page_are_served_from_the_apps_folder(server):
    base, _, _ = server
    code, body = _get(f"{base}/config")
    assert code == 200
    folder = str(private_folder())
    paths = sorted({m for m in _strings(json.loads(body)) if m.startswith(folder)})
    assert paths, "the page lists no example frame of the app's folder"
    code, body = _get(f"{base}/gradio_api/file={paths[0]}")
    assert code == 200 and body[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1")


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_the_working_directory_and_home_are_blocked_unless_they_hold_the_apps_folder(tmp_path, monkeypatch):
    folder = tmp_path / "app"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # the cwd holds the app's folder: blocking it would block the app
    assert blocked_paths(folder) == [str((tmp_path / "home").resolve())]


def test_the_private_folder_is_removed_at_exit(tmp_path):
    code = "from surgenet.app.serve import private_folder; print(private_folder())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "shared")}).stdout
    folder = Path(out.strip())
    assert folder.name.startswith("surgenet-app-") and not folder.exists()
