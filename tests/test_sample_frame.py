"""The shipped sample frame is what benchmarks/make_sample_frame.py generates, bit for bit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_sample_frame_is_shipped_and_reproducible():
    spec = importlib.util.spec_from_file_location("make_sample_frame", ROOT / "benchmarks" / "make_sample_frame.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = np.asarray(Image.open(ROOT / "surgenet" / "assets" / "sample_frame.png"))
    assert shipped.shape == (360, 640, 3) and shipped.dtype == np.uint8
    np.testing.assert_array_equal(module.make_frame(), shipped)
    np.testing.assert_array_equal(module.make_frame(), module.make_frame())
    assert shipped.std() > 20  # a textured scene, not a flat image
