r"""Shared look of every figure: fonts, the Okabe–Ito palette, labels, and saving.

* Palette: Okabe & Ito (2008), *Color Universal Design*: eight colours told apart
  under the common forms of colour blindness.  Each algorithm keeps one colour and one
  marker in every figure (:data:`ALGORITHM_STYLE`); a bound keeps its provenance in its
  legend entry (:func:`bound_label`: ``[derived]`` or ``[recalled]``) and its line style
  (derived: solid black-ish, recalled: dotted grey).
* :func:`save` writes a PNG (150 dpi) and a PDF of the same figure atomically
  (:func:`perfedavg.runs.rundir.atomic_write_bytes`) and returns both paths.

matplotlib is imported inside the functions only (the CLI must not pay for it at import).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from perfedavg.runs.rundir import atomic_write_bytes

#: Okabe–Ito colour-blind-safe palette
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "grey": "#777777",
}

#: full name of each algorithm, as in the paper (and empirical.reproduce.METHOD_NAMES)
ALGORITHM_NAMES = {
    "fedavg": "FedAvg",
    "fo": "Per-FedAvg (FO)",
    "hf": "Per-FedAvg (HF)",
    "exact": "Per-FedAvg (exact HVP)",
}

#: colour and marker of each algorithm, identical in every figure
ALGORITHM_STYLE = {
    "fedavg": {"color": OKABE_ITO["vermillion"], "marker": "s"},
    "fo": {"color": OKABE_ITO["blue"], "marker": "o"},
    "hf": {"color": OKABE_ITO["bluish green"], "marker": "^"},
    "exact": {"color": OKABE_ITO["reddish purple"], "marker": "D"},
}

#: line style of a bound by provenance
BOUND_STYLE = {
    "derived": {"color": OKABE_ITO["black"], "linestyle": "-", "linewidth": 1.8},
    "recalled": {"color": OKABE_ITO["grey"], "linestyle": ":", "linewidth": 1.8},
    "sure": {"color": OKABE_ITO["black"], "linestyle": "--", "linewidth": 1.5},
}

#: colour of a predicted rate / slope guide
RATE_COLOR = OKABE_ITO["orange"]


def setup() -> Any:
    """Apply the shared rcParams (Agg backend, readable font sizes, light grid) and return pyplot."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.rcsetup import cycler  # what matplotlib.cycler names

    plt.rcParams.update(
        {
            "font.size": 11,
            "axes.titlesize": 11.5,
            "axes.labelsize": 11,
            "legend.fontsize": 8.5,
            "xtick.labelsize": 9.5,
            "ytick.labelsize": 9.5,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "grid.linewidth": 0.6,
            "lines.linewidth": 1.6,
            "lines.markersize": 5,
            "legend.framealpha": 0.85,
            "figure.dpi": 100,
            "savefig.bbox": "tight",
            "pdf.fonttype": 42,  # embed TrueType: text stays selectable in the PDF
            "axes.prop_cycle": cycler(
                color=[
                    OKABE_ITO[k]
                    for k in ("blue", "vermillion", "bluish green", "reddish purple", "orange", "sky blue", "black")
                ]
            ),
        }
    )
    return plt


def algorithm_label(algorithm: str) -> str:
    """Legend name of an algorithm (``fo`` -> ``Per-FedAvg (FO)``)."""
    return ALGORITHM_NAMES.get(algorithm, algorithm)


def bound_label(what: str, provenance: str) -> str:
    """Legend entry of a bound that names its provenance, e.g. ``"explicit bound [derived]"``."""
    return f"{what} [{provenance}]"


def save(fig: Any, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.pdf`` into ``out_dir`` atomically; close ``fig``."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, kw in (("png", {"dpi": 150}), ("pdf", {})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, **kw)
        path = out_dir / f"{stem}.{fmt}"
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths
