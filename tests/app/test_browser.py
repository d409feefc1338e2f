"""End to end: `surgenet app` served on a free local port, driven in a real headless Chromium.

Skips, saying why, where Debian's chromium or Playwright is missing (`.ci/run` installs chromium).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the web demo needs the app extra: pip install 'surgenet[app]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright (pip install playwright)")

from surgenet.label_sets import CHOLEC80_TOOLS, CVS_CRITERIA, ENDOSCAPES_CLASSES  # noqa: E402
from tests.helpers.paths import SHARED_DATA

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHARED_FRAMES = SHARED_DATA / "endoscapes" / "val" / "images"
# Flags for a sandboxed root container without a network (see the project's CI notes).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

THRESHOLD = "0.3"  # not the default, so the page shows that --threshold reached the tables

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_frame(tmp_path: Path) -> Path:
    """A real Endoscapes frame: from ../shared/data, else the one bundled with the package."""
    candidates = sorted(SHARED_FRAMES.glob("*.jpg")) if SHARED_FRAMES.is_dir() else []
    if not candidates:
        from surgenet.app.ui import example_frames

        candidates = [Path(p) for p in example_frames()]
    if not candidates:
        pytest.skip("no real frame: neither ../shared/data nor bundled example frames are present")
    target = tmp_path / candidates[0].name
    shutil.copy(candidates[0], target)
    return target


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost"}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "surgenet", "app", "--no-pretrained", "--port", str(port),
                             "--threshold", THRESHOLD],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"surgenet app exited early:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"surgenet app did not answer in time:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_upload_a_real_frame_and_see_the_overlay(server, tmp_path):
    frame = _real_frame(tmp_path)
    width, height = Image.open(frame).size
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(server, wait_until="domcontentloaded")
            page.locator("#frame-input input[type=file]").set_input_files(str(frame))
            page.locator("#frame-input img").first.wait_for(timeout=60_000)  # the upload is shown
            page.locator("#segment-button").click()
            overlay = page.locator("#overlay img").first
            overlay.wait_for(timeout=180_000)
            page.wait_for_function("() => { const i = document.querySelector('#overlay img');"
                                   " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
            size = overlay.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            legend = page.locator("#legend").inner_text(timeout=60_000)
            page.locator("#frame-info").get_by_text("Time per prediction").wait_for(timeout=60_000)
            tables = {task: page.locator(f"#{task} table tr").all_inner_texts() for task in ("tools", "cvs")}
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            if os.environ.get("SURGENET_APP_SCREENSHOT"):  # how the README picture is made
                page.screenshot(path=os.environ["SURGENET_APP_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
    assert size == [width, height]
    for name in ENDOSCAPES_CLASSES:
        assert name in legend
    assert (tmp_path / "app.png").stat().st_size > 10_000
    for task, labels, words in (("tools", CHOLEC80_TOOLS, ("present", "absent")),
                                ("cvs", CVS_CRITERIA, ("met", "not met"))):
        head, *rows = tables[task]
        assert f"at {THRESHOLD}" in head, head
        assert len(rows) == len(labels)
        for label, row in zip(labels, rows):
            cells = [c.strip() for c in row.split("\t") if c.strip()]
            assert cells[0] == label and cells[-1] in words, row
            probability = float(cells[-2].rstrip(" %")) / 100
            if abs(probability - float(THRESHOLD)) > 1e-3:  # the page rounds to 0.1 %
                assert (cells[-1] == words[0]) == (probability >= float(THRESHOLD)), row
