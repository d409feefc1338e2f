"""call_in_child: a function of a file run in a fresh process; its result, its exception, and a
death by signal come back to the caller as a value, the same exception, and ChildCrashed."""

from __future__ import annotations

import os
import signal
import textwrap

import numpy as np
import pytest

from surgenet.runtime.isolated import ChildCrashed, call_in_child


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "work.py"
    path.write_text(textwrap.dedent("""
        import os, signal, sys
        import numpy as np

        def add(a, b):
            return {"sum": a + b, "pid": os.getpid(), "torch_loaded": "torch" in sys.modules}

        def mean(values):
            return np.asarray(values).mean(axis=0)

        def fail(text):
            raise ValueError(text)

        def die(sig):
            os.kill(os.getpid(), sig)

        def env(name):
            return os.environ.get(name)

        def hang():
            import time
            time.sleep(60)
    """))
    return path


def test_the_result_comes_back_from_another_process(source):
    out = call_in_child(source, "add", a=2, b=3)
    assert out["sum"] == 5
    assert out["pid"] != os.getpid()
    assert out["torch_loaded"] is False  # a clean interpreter, whatever the parent imported


def test_arrays_travel_both_ways(source):
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(call_in_child(source, "mean", values=values), values.mean(axis=0))


def test_the_child_s_exception_is_raised_here(source):
    with pytest.raises(ValueError, match="bad input"):
        call_in_child(source, "fail", text="bad input")


@pytest.mark.skipif(not hasattr(signal, "SIGSEGV"), reason="no POSIX signals on this platform")
def test_a_segfault_is_a_crash_that_names_the_signal(source):
    with pytest.raises(ChildCrashed, match="SIGSEGV"):
        call_in_child(source, "die", sig=int(signal.SIGSEGV))


def test_the_environment_is_inherited(source, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert call_in_child(source, "env", name="ONEDNN_MAX_CPU_ISA") == "AVX2"


def test_a_child_past_its_timeout_is_killed(source):
    with pytest.raises(TimeoutError, match="hang"):
        call_in_child(source, "hang", timeout=3)
