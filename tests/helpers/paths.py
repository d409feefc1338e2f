"""Where the tests find the repository and the real data, whatever folder a test file sits in.

The real data (Endoscapes2023, CholecT50, Cholec80 clips) sits beside the repository as
``../shared/data`` on the development machines and in CI; a user's clone may not have it, and
tests that need it skip and say so.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
