"""surgenet.runtime.measure's shared benchmark helpers: sizes on the command line, the busy-machine
warning and its OpenMP hint."""

from __future__ import annotations

import argparse

import pytest

from surgenet.runtime import measure


def test_sizes_are_square_or_height_by_width():
    assert measure.parse_size("256") == (256, 256)
    assert measure.parse_size("256x448") == (256, 448) == measure.parse_size("256X448")
    for bad in ("big", "0", "256x", "1x2x3"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a size"):
            measure.parse_size(bad)


def test_a_busy_machine_is_warned_about_with_the_openmp_hint_unless_the_policy_is_set(monkeypatch, capsys):
    monkeypatch.setattr(measure.os, "getloadavg", lambda: (7.0, 6.0, 5.0))
    monkeypatch.setattr(measure.os, "cpu_count", lambda: 2)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert measure.warn_if_busy() == 7.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "load average 7.0 on 2 CPUs" in err[0] and "OMP_WAIT_POLICY=PASSIVE" in err[0]
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert measure.omp_wait_policy() == "PASSIVE"
    measure.warn_if_busy()
    err = capsys.readouterr().err
    assert "load average" in err and "OMP_WAIT_POLICY" not in err  # the user chose a policy: no advice
    monkeypatch.setattr(measure.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert measure.warn_if_busy() == 0.2 and capsys.readouterr().err == ""
