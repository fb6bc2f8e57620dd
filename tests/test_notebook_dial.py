"""The tutorial's dial (notebooks/dial.py): its callbacks are plain functions, called here as the widgets would.

The lesson the dial is set up to show, checked with numbers: the measured stationary floor Φ_K rises at least
:data:`MIN_RISE` times from h = 0 to h = 1 at the dial's default settings (r = 0.1: heterogeneity reaches the
floor through client sampling), and the derived bound lies above every seed's Φ_K at both ends.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

#: what the tutorial tells the student to notice: the floor rises a few times from h = 0 to h = 1 (measured
#: here about 12x over three seeds; 3x leaves room for the seeds' spread)
MIN_RISE = 3.0


def _dial():
    path = Path(__file__).parent.parent / "notebooks" / "dial.py"
    spec = importlib.util.spec_from_file_location("tutorial_dial", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ends():
    dial = _dial()
    return dial, dial.dial(h=0.0), dial.dial(h=1.0)


def test_dial_shows_the_floor_rising_with_heterogeneity(ends):
    _, calm, mixed = ends
    assert mixed.measured.mean() >= MIN_RISE * calm.measured.mean(), (calm.measured, mixed.measured)
    for d in (calm, mixed):
        assert (d.measured > 0).all() and (d.measured <= d.bound).all(), (d.measured, d.bound)
    # the bound's client-sampling term rises with h as well (it carries gamma, which grows with h)
    assert mixed.terms["client sampling"] > calm.terms["client sampling"]


def test_dial_callback_draws_and_reports(ends, capsys):
    import matplotlib

    matplotlib.use("Agg", force=True)
    dial, _, _ = ends
    d = dial.on_change(h=0.5, alpha=0.5, beta=0.1, tau=1, r=0.1, batch=200, algorithm="exact")
    assert d.settings["h"] == 0.5 and len(d.measured) == len(dial.SEEDS)
    out = capsys.readouterr().out
    assert "measured Phi_K" in out and "derived bound" in out and "dominant term" in out
