r"""Shared look of every figure: fonts, the Okabe–Ito palette, labels, and saving.

* Palette: Okabe & Ito (2008), *Color Universal Design*: eight colours told apart
  under the common forms of colour blindness.  Each algorithm keeps one colour and one
  marker in every figure (:data:`ALGORITHM_STYLE`); a bound keeps its provenance in its
  legend entry (:func:`bound_label`: ``[derived]`` or ``[recalled]``) and its line style
  (derived: solid black-ish, recalled: dotted grey).
* Two sizes of every figure (:func:`render`, :data:`PROFILES`): *paper* (3.3 in single column for one
  panel, 6.9 in double column for two or three, fonts of 7.5 pt at print size; PNG and PDF) and *slide*
  (16:9, large type; PNG).  :func:`save` writes one figure atomically
  (:func:`perfedavg.runs.rundir.atomic_write_bytes`) and returns its paths.
* :func:`write_data` writes the numbers a figure draws beside it (``<stem>.json``): every bound with the
  measurement it bounds at the same x, the tightness the figure states and its verdict, and the caption's
  details, so that a test can check what the picture says from what it shows.
* :func:`tightness` is the one definition of a stated tightness: the range of bound / measured.

matplotlib is imported inside the functions only (the CLI must not pay for it at import).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from perfedavg.algorithms import ALGORITHM_NAMES  # the one name of each algorithm, in every figure too
from perfedavg.runs.rundir import atomic_write_bytes
from perfedavg.words import plural  # noqa: F401  (re-exported: the figures' counts with their nouns)

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


#: the two sizes written for every figure: paper (inches at print size, fonts >= 7 pt there) and slide (16:9)
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {"single": 3.3, "double": 6.9, "height": 3.4, "font": 7.5, "dpi": 150, "suffix": "", "pdf": True},
    "slide": {
        "single": 13.333,
        "double": 13.333,
        "height": 7.5,
        "font": 17.0,
        "dpi": 100,
        "suffix": "-slide",
        "pdf": False,
    },
}


def setup(font: float = 11.0) -> Any:
    """Apply the shared rcParams (Agg backend, font sizes scaled from ``font`` points, light grid) and return
    pyplot."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.rcsetup import cycler  # what matplotlib.cycler names

    plt.rcParams.update(
        {
            "font.size": font,
            "axes.titlesize": font,
            "axes.labelsize": font,
            "figure.titlesize": font * 1.08,
            "legend.fontsize": font * 0.93,
            "xtick.labelsize": font * 0.93,
            "ytick.labelsize": font * 0.93,
            "mathtext.fontset": "dejavusans",
            "axes.grid": True,
            "grid.alpha": 0.3,
            "grid.linewidth": 0.6,
            "lines.linewidth": 1.6 * font / 11,
            "lines.markersize": 5 * font / 11,
            "legend.framealpha": 0.85,
            "figure.dpi": 100,
            "savefig.bbox": "standard",  # the size set is the size printed (constrained layout fits the content)
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


def save(fig: Any, out_dir: str | Path, stem: str, dpi: int = 150, pdf: bool = True) -> list[Path]:
    """Write ``stem.png`` (at ``dpi``) and, when ``pdf``, ``stem.pdf`` into ``out_dir`` atomically; close ``fig``."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, kw in (("png", {"dpi": dpi}), ("pdf", {}))[: 2 if pdf else 1]:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, **kw)
        path = out_dir / f"{stem}.{fmt}"
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths


def render(
    out_dir: str | Path, stem: str, n_panels: int, draw: Callable[[Any, list, str], None], height: float = 1.0
) -> list[Path]:
    """Draw a figure of ``n_panels`` side-by-side panels in both :data:`PROFILES` and save them: the paper size as
    ``stem.png`` + ``stem.pdf``, the slide as ``stem-slide.png``.  ``draw(fig, axes, profile)`` fills the axes
    (``profile`` is ``"paper"`` or ``"slide"``, for the few choices that differ, such as legend columns);
    ``height`` scales the paper height (a long shared legend needs room; the slide stays 16:9)."""
    paths: list[Path] = []
    for name, prof in PROFILES.items():
        # three panels across a slide: a smaller (still large) type, or the titles run off the panels
        plt = setup(prof["font"] * (0.82 if name == "slide" and n_panels > 2 else 1.0))
        width = prof["single"] if n_panels == 1 else prof["double"]
        tall = prof["height"] * (height if name == "paper" else 1.0)
        fig, axes = plt.subplots(1, n_panels, figsize=(width, tall), layout="constrained", squeeze=False)
        draw(fig, list(axes.flat), name)
        paths += save(fig, out_dir, stem + prof["suffix"], dpi=prof["dpi"], pdf=prof["pdf"])
    return paths


def shared_legend(fig: Any, axes: list) -> None:
    """One legend for the whole figure, below the panels (entries of every panel, each label once), in as many
    columns as the longest label lets fit across the figure's width."""
    import matplotlib.pyplot as plt

    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if not seen:
        return
    size = plt.rcParams["legend.fontsize"]
    longest = max(len(label) for label in seen)
    # an entry: its label at ~0.55 em per character, plus the handle and padding (~4 em), in inches
    entry = (longest * 0.55 + 4.0) * size / 72.0
    ncol = max(1, min(len(seen), int(0.98 * fig.get_figwidth() / entry)))
    fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=ncol, frameon=False)


def tightness(bound: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(smallest, largest) bound / measured over the points where a bound is drawn with the measurement it
    bounds: the tightness a figure states (1 would be a bound met exactly, below 1 a violated one)."""
    ratios = [b / m for b, m in zip(bound, measured) if m > 0 and math.isfinite(b)]
    if not ratios:
        return math.nan, math.nan
    return min(ratios), max(ratios)


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def number(value: float) -> str:
    """A positive number as printed in titles: 3 significant digits below 10⁴, else ``3.0·10⁷`` (2 digits)."""
    if 1e3 <= abs(value) < 1e4:
        return f"{value:.0f}"
    if not math.isfinite(value) or value == 0 or 1e-3 <= abs(value) < 1e3:
        return f"{value:.3g}"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10**exponent
    if round(mantissa, 1) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.1f}·10{str(exponent).translate(SUPERSCRIPT)}"


def times(value: float) -> str:
    """A ratio as printed in titles and the index: :func:`number` and ``×`` (``45.2×``, ``3.0·10⁷×``)."""
    return f"{number(value)}×"


def suptitle(fig: Any, text: str) -> None:
    """The figure's headline, wrapped to its width (an estimate of 0.55 em per character)."""
    import textwrap

    import matplotlib.pyplot as plt

    chars = int(fig.get_figwidth() * 72 / (0.55 * plt.rcParams["figure.titlesize"]))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in text.split("\n")))


def tightness_span(low: float, high: float) -> str:
    """``45.2×`` or ``12.3–456×`` (``n/a`` when nothing is drawn)."""
    if not math.isfinite(low):
        return "n/a"
    return times(low) if times(low) == times(high) else f"{number(low)}–{times(high)}"


def tightness_text(low: float, high: float) -> str:
    """``bound/measured = 45.2×`` or ``bound/measured = 12.3–456×``: what a title states."""
    if not math.isfinite(low):
        return "bound/measured not available"
    return f"bound/measured = {tightness_span(low, high)}"


def finish(
    out: str | Path,
    stem: str,
    files: list[Path],
    *,
    headline: str,
    span: tuple[float, float],
    verdict: str,
    pairs: list[dict[str, Any]],
    details: str,
    caption: str,
    report: list[dict[str, Any]],
    tight_text: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Every figure's last step: ``<stem>.json`` (:func:`write_data`; ``span`` is the stated tightness
    ``(low, high)``, ``extra`` what a figure states besides) added to ``files``, and what the index needs."""
    low, high = span
    data = {
        "title": headline,
        "tightness": [low, high],
        "tightness_text": tightness_text(low, high) if tight_text is None else tight_text,
        "verdict": verdict,
        "pairs": pairs,
        **extra,
        "details": details,
        "caption": caption,
        "report": report,
    }
    files.append(write_data(out, stem, data))
    return {"files": files, "caption": caption, "details": details, "report": report, "headline": headline}


def write_data(out_dir: str | Path, stem: str, data: dict[str, Any]) -> Path:
    """``<stem>.json`` beside the figure: what it draws and states (module docstring), written atomically.

    ``data`` holds ``title`` (the stated headline), ``tightness`` ``[low, high]``, ``verdict``, ``pairs`` (a
    list of ``{"panel", "what", "x", "bound", "measured"}``: a bound and the measurement it bounds at the
    same x, drawn on one axis or as a ratio panel; ``measured_max`` the largest seed's or point's where saved;
    ``stated: false`` for a pair drawn but not part of the stated tightness), ``details`` (the long caption)
    and ``report`` (rows for the index's table)."""
    path = Path(out_dir) / f"{stem}.json"
    atomic_write_bytes(path, (json.dumps(data, indent=1, default=float) + "\n").encode())
    return path
