r"""Figure 3: the stationarity floor against the inner batch D and the step β.

Drawn from the rate table's rows "floor vs D" and "floor vs beta"
(:func:`synthetic.rates.rate_table`, through :mod:`figures._floors`), each isolating one
term of the derived bound (docs/paper.md §5, DERIVATIONS.md §7) on the quadratic task with
exact constants, runs started at the minimiser w*_α, stationary means with batch-means
95 % intervals:

* **D** (D' = D'' = 200, α = 1, β = 0.1): stochastic-gradient + bias-floor terms
  (bias ∝ α²σ_G²/D);
* **β** (τ = 1, D' = 1: gradient noise): the stochastic-gradient term L_F β s²/n;

Each panel: the measured means, the fitted slope with its interval, the predicted slope
(local slope of the derived bound's term, [derived]), the recalled shape's slope
([recalled]), the row's PASS/FAIL and the derived bound's ratio to the measured floor
(:mod:`figures._floor_figure`).  The local steps τ have their own figure (:mod:`figures.fig3_drift`).
"""

from __future__ import annotations

from pathlib import Path

from . import _floors
from ._floor_figure import draw_floor_figure
from .style import OKABE_ITO

NAME = "floors"
TITLE = "Stationarity floor against inner batch D and step β"
#: panel -> (rate-table row, x label, y label, colour, marker, short title, caption phrase)
PANELS = {
    "D": (
        "floor vs D",
        "inner batch size D",
        r"floor: stationary mean of $\varphi_k$",
        OKABE_ITO["sky blue"],
        "o",
        "floor vs D",
        "inner batch D (stochastic gradient + bias floor)",
    ),
    "beta": (
        "floor vs beta",
        "outer step β",
        r"floor: stationary mean of $\varphi_k$",
        OKABE_ITO["sky blue"],
        "s",
        "floor vs β",
        "outer step β (stochastic-gradient term)",
    ),
}


def run(root: Path, level: str) -> None:
    """The rate table at ``level`` (reused when saved, e.g. by figure 2) and this figure's manifest."""
    _floors.run_figure(root, NAME, level)


def draw(root: Path, out: Path) -> dict:
    return draw_floor_figure(root, out, NAME, "fig3_floors", PANELS, "D and β", "§5")
