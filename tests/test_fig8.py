"""The personalization figure (figures/fig8_personalization.py) from a tiny hand-made personalization.json: both
sizes and its JSON, the saved per-user accuracies drawn as they are, one drawing shared with the command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: the paper size (figures.style.PROFILES: 6.9 in at 150 dpi, one row of panels up to 1.25x its 3.4 in height)
#: and the slide's 16:9 at 100 dpi, restated
PAPER_PX = (round(6.9 * 150), round(3.4 * 1.25 * 150))
SLIDE_PX = (1333, 750)
KS = (0, 1, 5)
#: every user's test accuracy (%) per method, group and k (4 current users, 2 new): Per-FedAvg's shared models
#: start low and overtake FedAvg after one step, as the real runs do
USERS = {
    "fedavg": {"": ([90, 91, 92, 93], [93, 94, 95, 96], [96, 97, 97, 98]), "_new": ([88, 90], [92, 93], [96, 97])},
    "fedavg-hf": {"": ([85, 86, 87, 88], [91, 92, 93, 94], [97, 98, 98, 99]), "_new": ([86, 87], [92, 94], [98, 99])},
    "fo": {"": ([70, 72, 74, 76], [95, 96, 96, 97], [97, 97, 98, 98]), "_new": ([78, 80], [94, 95], [96, 97])},
    "hf": {"": ([20, 25, 90, 92], [95, 96, 97, 98], [97, 98, 98, 99]), "_new": ([21, 90], [94, 95], [97, 98])},
}


def _mean(values: list[float]) -> dict:
    return {"mean": sum(values) / len(values), "std": 0.0, "n": 1}


def write_result(root: Path, with_users: bool = True) -> Path:
    """``<root>/personalization/personalization.json`` (and its table) as the command saves them, by hand."""
    src = root / "personalization"
    src.mkdir(parents=True)
    rows = []
    users = {}
    for method, groups in USERS.items():
        curves = {}
        for protocol, shift in (("test", 0.0), ("train", -1.5)):  # the leak-free protocol's differ: not drawn
            for who, per_k in groups.items():
                curves[f"{protocol}{who}"] = {f"k={k}": [x + shift for x in v] for k, v in zip(KS, per_k)}
        users[method] = curves
        cells = {key: {k: _mean(v) for k, v in curve.items()} for key, curve in curves.items()}
        rows.append({"dataset": "MNIST", "method": method, "cells": cells})
    result = {
        "plan": {"K": 30, "seeds": 1, "methods": list(USERS), "adapt_steps": 5},
        "tau": 10,
        "alpha": 0.01,
        "steps": list(KS),
        "rows": rows,
        "pictures": ["personalization-mnist.png"],
    }
    if with_users:
        result["users"] = {"mnist": {"label": "MNIST", "methods": users}}
    (src / "personalization.json").write_text(json.dumps(result))
    (src / "personalization.md").write_text("| data set | method |\n|---|---|\n| MNIST | Per-FedAvg (HF) |\n")
    return src


def _curves(fig) -> list[tuple]:
    """Every drawn curve of a figure: (panel title, line style, x, y), legend proxies (no data) left out."""
    out = []
    for ax in fig.axes:
        for line in ax.get_lines():
            x = tuple(float(v) for v in line.get_xdata())
            if x:
                out.append((ax.get_title(loc="left"), line.get_linestyle(), x, tuple(map(float, line.get_ydata()))))
    return out


def _ecdf(values: list[float]) -> tuple[tuple, tuple]:
    """The ECDF of ``values`` as a plain loop: sorted values, and i/n at the i-th (1-based)."""
    xs = sorted(float(v) for v in values)
    ys = []
    for i in range(len(xs)):
        ys.append((i + 1) / len(xs))
    return tuple(xs), tuple(ys)


@pytest.fixture
def drawn(tmp_path, monkeypatch):
    """The figure built through the index from the hand-made JSON, with the paper figure's curves captured."""
    import figures.style as style
    from figures.build import build

    captured = {}
    real_save = style.save

    def save(fig, out_dir, stem, **kw):
        captured[stem] = _curves(fig)
        return real_save(fig, out_dir, stem, **kw)

    monkeypatch.setattr(style, "save", save)
    write_result(tmp_path / "runs")
    (entry,) = build(["personalization"], tmp_path / "out", tmp_path / "runs", level="full", progress=False)
    return tmp_path, entry, captured


def test_personalization_figure_in_both_sizes_with_its_json_and_a_short_caption(drawn):
    from PIL import Image

    tmp_path, entry, _ = drawn
    out = tmp_path / "out"
    stem = "fig8_personalization_mnist"
    assert not entry.note, entry.note
    assert sorted(p.name for p in entry.files) == sorted(f"{stem}{s}" for s in (".png", ".pdf", "-slide.png", ".json"))
    for name in (f"{stem}.png", f"{stem}-slide.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 10_000, name
        with Image.open(out / name) as im:
            size = im.size
        if name.endswith("-slide.png"):
            assert size == SLIDE_PX, size
        else:
            assert size[0] <= PAPER_PX[0] and size[1] <= PAPER_PX[1], size
    assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    assert len(re.findall(r"[.!?](?:\s|$)", entry.caption)) <= 3, entry.caption
    assert "What the theory and the paper predict" in entry.details
    saved = json.loads((out / f"{stem}.json").read_text())
    assert saved["caption"] == entry.caption and saved["title"] == entry.headline
    # the headline states the saved means after one step, current and new users, Per-FedAvg (HF) and FedAvg
    for method in ("hf", "fedavg"):
        for who in ("", "_new"):
            mean = sum(USERS[method][who][1]) / len(USERS[method][who][1])
            assert saved["means"][method]["new" if who else "current"]["k=1"] == pytest.approx(mean)
            assert f"{mean:.1f}%" in saved["title"], (method, who, saved["title"])
    assert "before adapting, Per-FedAvg (HF)'s shared model is below FedAvg's" in saved["title"]
    assert [r["verdict"] for r in entry.report] == ["holds", "holds"]
    md = (out / "index.md").read_text()
    assert f"{stem}.png" in md and "| MNIST | Per-FedAvg (HF) |" in md


def test_the_figure_draws_every_saved_users_accuracy_and_the_command_the_same_curves(drawn, monkeypatch):
    """Each panel (k = 0, 1, 5) holds, per method, the ECDF of the saved accuracies of current users (solid) and
    new users (dashed), recomputed here by a plain loop; the command's own picture (empirical.personalization.
    plot_users) draws exactly the same curves, from the same saved JSON."""
    import matplotlib.figure

    from empirical.personalization import plot_users

    tmp_path, _, captured = drawn
    paper = captured["fig8_personalization_mnist"]
    want = []
    for k_index in range(len(KS)):
        for groups in USERS.values():
            for who, style in (("", "-"), ("_new", "--")):
                want.append((k_index, style, *_ecdf(groups[who][k_index])))
    titles = sorted({title for title, *_ in paper})
    assert len(titles) == len(KS) and all(f"k = {k}" in t for t, k in zip(titles, KS)), titles
    got = sorted((titles.index(t), style, x, y) for t, style, x, y in paper)
    assert got == sorted(want)

    command = {}
    real = matplotlib.figure.Figure.savefig

    def savefig(fig, *args, **kw):
        command["curves"] = _curves(fig)
        return real(fig, *args, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    src = tmp_path / "runs" / "personalization"
    result = json.loads((src / "personalization.json").read_text())
    assert plot_users(result, tmp_path, "mnist").is_file()
    assert sorted(command["curves"]) == sorted(paper)


def test_saved_output_without_per_user_accuracies_is_skipped_with_the_command_that_adds_them(tmp_path):
    from figures.build import build

    src = write_result(tmp_path / "runs", with_users=False)
    (entry,) = build(["personalization"], tmp_path / "out", tmp_path / "runs", level="full", progress=False)
    assert not entry.files and f"`perfedavg reproduce personalization --out {src}`" in entry.note
