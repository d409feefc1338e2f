"""The table of bounds and the two checks built from it (argparse types and config values)."""

from __future__ import annotations

import argparse
import math

import pytest

from surgenet.bounds import BOUNDS, Bound, _check, bounded, check_number
from surgenet.exceptions import InputError


def test_every_bound_is_finite_ordered_and_explained():
    for name, bound in BOUNDS.items():
        assert math.isfinite(bound.low) and math.isfinite(bound.high) and bound.low < bound.high, name
        assert bound.kind in (int, float) and bound.why, name


@pytest.mark.parametrize("text,value", [("16", 16), ("4096", 4096), ("  64 ", 64)])
def test_a_whole_number_in_range(text, value):
    assert bounded("image_side")(text) == value


@pytest.mark.parametrize("text,message", [
    ("15", "must be >= 16, got 15"),
    ("4097", "must be <= 4096, got 4097"),
    ("64.0", "expected a whole number, got '64.0'"),
    ("nan", "expected a whole number, got 'nan'"),
    ("1e3", "expected a whole number, got '1e3'"),
    ("", "expected a whole number, got ''"),
])
def test_a_whole_number_out_of_range_or_not_one(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        bounded("image_side")(text)


@pytest.mark.parametrize("text", ["0", "-0.0", "1e-9", "1000.5", "inf", "-inf", "nan", "1e400", "fast"])
def test_rates_outside_their_range(text):
    with pytest.raises(argparse.ArgumentTypeError):
        bounded("fps")(text)


def test_an_open_low_end_refuses_the_end_itself_and_accepts_just_above():
    with pytest.raises(argparse.ArgumentTypeError, match="must be a finite number > 0"):
        bounded("lr")("0")
    assert bounded("lr")("1e-12") == 1e-12
    assert bounded("lr_or_zero")("0") == 0.0


def test_fractions_say_between_0_and_1():
    assert bounded("fraction")("0") == 0.0 and bounded("fraction")("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match="must be between 0 and 1, got 1.01"):
        bounded("fraction")("1.01")


def test_a_multiple_rule():
    bound = Bound(16, 4096, int, "a side", multiple=32)
    assert _check(bound, 64, "64", False, "side") == 64
    with pytest.raises(InputError, match="side: must be a multiple of 32, got 80"):
        _check(bound, 80, "80", False, "side")


@pytest.mark.parametrize("value,message", [
    (True, "expected a whole number, got True"),
    (None, "expected a whole number, got None"),
    ([8], "expected a whole number"),
    (8.5, "expected a whole number, got 8.5"),
    (0, "must be >= 1, got 0"),
    ("many", "expected a whole number, got 'many'"),
])
def test_config_values_name_their_key(value, message):
    with pytest.raises(InputError) as info:
        check_number("batch_size", value, "config key train.batch_size")
    assert str(info.value).startswith("config key train.batch_size: ") and message in str(info.value)


def test_config_values_in_range_come_back_as_their_kind():
    assert check_number("batch_size", 8.0, "k") == 8 and isinstance(check_number("batch_size", 8.0, "k"), int)
    assert check_number("lr", "1e-3", "k") == 1e-3  # YAML 1.1 reads 1e-3 as a string
    assert check_number("lr", 1, "k") == 1.0
