"""The config loader: TOML files, ``--set`` overrides, types and ranges, round trip."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfedavg.engine.config import INT_MAX, RunConfig
from perfedavg.errors import UsageError
from perfedavg.runs.config import build_config, dumps_toml, read_toml


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('K = 7\nalpha = 0.5\n[task]\nname = "softmax"\nh = 0.25\n')
    cfg = build_config(read_toml(path), ["alpha=0.01", "task.h=0.75", "task=softmax"])
    assert (cfg.K, cfg.alpha, cfg.task["h"], cfg.tau) == (7, 0.01, 0.75, RunConfig().tau)


def test_an_int_is_accepted_for_a_float_and_converted():
    cfg = build_config({}, ["beta=1"])
    assert cfg.beta == 1.0 and isinstance(cfg.beta, float)


@pytest.mark.parametrize(
    "base,sets,match",
    [
        ({"task": "softmax"}, [], "task must be a table"),
        ({"task": [1]}, [], "task must be a table"),
        ({}, ["task=3"], "by name"),
        ({}, ["alpha=1" + "0" * 400], "too large for a float"),
        ({}, ["seed=" + str(INT_MAX + 1)], "at most"),
        ({}, ["K=true"], "is a boolean, not a number"),
        ({}, ["noequals"], "no .=.: write --set noequals=VALUE"),
        ({}, ["=3"], "key=value"),
        ({"Bogus": 1}, [], "unknown option 'Bogus'"),
        ({}, ["checkpoint_every=-1"], "checkpoint_every=-1 is out of range"),
        ({}, ["alpha=-inf"], "finite"),
    ],
)
def test_bad_config_values_are_one_line_usage_errors(base, sets, match):
    with pytest.raises(UsageError, match=match) as info:
        build_config(base, sets)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "is empty"),
        (b"# only a comment\n", "is empty"),
        (b"\x80\x81", "not UTF-8"),
        (b"K = ", "not valid TOML"),
        (b"a = [" * 2000, "not valid TOML"),
    ],
)
def test_bad_config_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "c.toml"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=match) as info:
        read_toml(path)
    assert str(path) in str(info.value)


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=1e-300, max_value=1e300)


@settings(max_examples=60, deadline=None)
@given(
    K=st.integers(1, INT_MAX),
    alpha=st.one_of(st.just(0.0), finite),
    beta=finite,
    r=st.floats(1e-6, 1.0),
    seed=st.integers(0, INT_MAX),
    algorithm=st.sampled_from(["fedavg", "fo", "hf", "exact"]),
    h=st.floats(0.0, 1.0),
    track=st.booleans(),
)
def test_the_saved_toml_reads_back_to_the_same_config(K, alpha, beta, r, seed, algorithm, h, track):
    """Written by the project's TOML writer, read by its one reader (``read_toml``: tomllib, or tomli on 3.10)."""
    import tempfile
    from pathlib import Path

    cfg = build_config(
        {
            "K": K,
            "alpha": alpha,
            "beta": beta,
            "r": r,
            "seed": seed,
            "algorithm": algorithm,
            "track_inner": track,
            "task": {"name": "softmax", "h": h},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(dumps_toml(cfg.to_dict()))
        again = build_config(read_toml(path))
    assert again == cfg  # floats written with repr(): exact


@settings(max_examples=60, deadline=None)
@given(
    value=st.one_of(
        st.floats(),
        st.integers(),
        st.text(max_size=5),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    )
)
def test_the_loader_takes_any_value_for_any_option_and_never_crashes(value):
    """Any value for any option: a config, or one UsageError; never another exception."""
    for name in ("K", "alpha", "r", "algorithm", "track_inner", "checkpoint_every"):
        try:
            cfg = build_config({name: value})
        except UsageError as exc:
            assert "\n" not in str(exc) and name in str(exc)
        else:
            got = getattr(cfg, name)
            assert got == value or (isinstance(got, float) and math.isclose(got, value))
