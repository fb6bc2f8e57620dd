"""Per-sample bounds (B_sample, L_sample, rho_sample) kept apart from the per-user B, L, rho in Constants."""

from __future__ import annotations

import json
import math

import pytest

from theory import distances, lemmas
from theory.constants import Constants

BASE = dict(L=1.0, rho=0.5, B=2.0, sigma_G=1.0, sigma_H=1.0, gamma_G=0.1, gamma_H=0.1, F0_gap=1.0, alpha=0.5)


def test_not_given_they_follow_their_per_user_twin_and_say_so():
    c = Constants(**BASE)
    assert c.sample_assumed == ("B_sample", "L_sample", "rho_sample")
    assert (c.B_sample, c.L_sample, c.rho_sample) == (c.B, c.L, c.rho)
    moved = c.replace(B=3.0, rho=0.25)  # an assumed twin follows its per-user value
    assert (moved.B_sample, moved.rho_sample, moved.sample_assumed) == (3.0, 0.25, c.sample_assumed)
    assert "B_sample" not in c.to_toml()
    given = c.replace(B_sample=5.0)
    assert given.sample_assumed == ("L_sample", "rho_sample") and given.replace(B=3.0).B_sample == 5.0
    assert "B_sample = 5.0" in given.to_toml()


def test_the_hf_terms_and_the_tv_statements_read_the_per_sample_bounds():
    """HF's extra term alpha rho_s delta B_s^2 / 2 and the TV bounds 4 B_s^2 tv^2, 4 L_s^2 tv^2 move with the
    per-sample fields and not with the per-user ones (which the other lemmas read)."""
    c = Constants(**BASE, delta=0.1, B_sample=4.0, L_sample=3.0, rho_sample=2.0)
    hf = lemmas.direction_bias("hf")(c) - lemmas.direction_bias("exact")(c)
    assert hf == pytest.approx(c.alpha * 2.0 * c.delta * 4.0**2 / 2, rel=1e-14)
    assert distances.tv_gradient_bound()(c, tv=0.5) == pytest.approx(4 * 4.0**2 * 0.25)
    assert distances.tv_hessian_bound()(c, tv=0.5) == pytest.approx(4 * 3.0**2 * 0.25)
    assert lemmas.smoothness_derived()(c) == pytest.approx(1.0 * 1.5**2 + 0.5 * 0.5 * 2.0)  # per-user rho, B
    assert {"B_sample", "rho_sample"} <= set(lemmas.direction_mse("hf").arg_names)
    assert not {"B", "rho"} & set(distances.tv_gradient_bound().arg_names + distances.tv_hessian_bound().arg_names)


def test_a_twin_of_a_missing_constant_is_missing_too():
    """rho not estimated (NaN): rho_sample, which would have been taken from it, is NaN as well, never the
    placeholder the file reader passed through validation."""
    c = Constants(**BASE).with_missing({"rho"})
    assert math.isnan(c.rho) and math.isnan(c.rho_sample) and c.missing == {"rho"}
    assert math.isnan(lemmas.direction_bias("hf")(c))
    given = Constants(**BASE, rho_sample=1.0).with_missing({"rho"})
    assert given.missing == {"rho"} and given.rho_sample == 1.0


def test_perfedavg_bounds_says_which_per_sample_bounds_it_has(tmp_path, capsys):
    from perfedavg.cli import main

    path = tmp_path / "c.toml"
    path.write_text(Constants(**BASE).to_toml())
    assert main(["bounds", "--constants", str(path)]) == 0
    assert "per-sample B_sample, L_sample, rho_sample not given: taken equal to the per-user B, L, rho" in (
        capsys.readouterr().out
    )
    path.write_text(Constants(**BASE, B_sample=3.0, L_sample=1.0, rho_sample=1.0).to_toml())
    assert main(["bounds", "--constants", str(path)]) == 0
    assert "not given" not in capsys.readouterr().out
    # rho not estimated: the HF bias is not evaluable, and names the per-sample rho it took from rho
    doc = tmp_path / "c.json"
    doc.write_text(json.dumps({"constants": {**BASE, "rho": None}}))
    assert main(["bounds", "--constants", str(doc), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    hf = out["lemmas"]["bias_hf"][0]
    assert out["missing"] == ["rho"] and hf["value"] == "not evaluable" and "rho_sample" in hf["needs"]
