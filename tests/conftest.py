"""Test setup: no network, a private Hugging Face cache and surgenet cache, tiny sizes."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Before huggingface_hub is imported anywhere: never reach the Hub, use a private cache.
_HF_HOME = tempfile.mkdtemp(prefix="surgenet-test-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_CACHE"] = os.path.join(_HF_HOME, "hub")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# surgenet's own cache (the --backend auto choices): a private folder too, never the user's.
_SURGENET_CACHE = tempfile.mkdtemp(prefix="surgenet-test-cache-")
atexit.register(shutil.rmtree, _SURGENET_CACHE, ignore_errors=True)
os.environ["SURGENET_CACHE"] = _SURGENET_CACHE
os.environ.setdefault("OMP_NUM_THREADS", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers.hub_cache import HubCache  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture
def hf_cache() -> HubCache:
    """A Hugging Face cache (the default one of this test session), emptied after the test."""
    cache = HubCache(Path(os.environ["HF_HUB_CACHE"]))
    yield cache
    shutil.rmtree(cache.root, ignore_errors=True)
