"""`perfedavg bounds` through perfedavg.cli.main (torch-free)."""

from __future__ import annotations

import json

import pytest

from perfedavg.cli import main
from theory.constants import Constants

BASE = dict(L=1.0, rho=1.0, B=1.0, sigma_G=1.0, sigma_H=1.0, gamma_G=0.5, gamma_H=0.5, F0_gap=1.0)


@pytest.fixture
def toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(Constants(**BASE).to_toml())
    return str(p)


def test_bounds_text_names_provenance_terms_and_dominant(toml, capsys):
    assert main(["bounds", "--constants", toml]) == 0
    out = capsys.readouterr().out
    for word in ("[recalled]", "[derived]", "DERIVED explicit upper bound", "RECALLED shape",
                 "not an upper bound", "dominates", "optimization", "client sampling",
                 "local drift", "bias floor", "Per-FedAvg (FO)", "Per-FedAvg (HF)", "corollary"):
        assert word in out, word


def test_bounds_flags_override_file(toml, capsys):
    assert main(["bounds", "--constants", toml, "--beta", "0.5", "--variant", "fo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["constants"]["beta"] == 0.5
    assert data["convergence"]["fo"]["condition"]["derived"] is False
    assert data["convergence"]["fo"]["derived"]["value"] == "inf"


def test_bounds_flags_only_json(capsys):
    argv = ["bounds", "--json", "--variant", "exact"]
    for k, v in BASE.items():
        argv += [f"--{k}", str(v)]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    conv = data["convergence"]["exact"]
    assert conv["derived"]["provenance"] == "derived"
    assert conv["recalled_shape"]["provenance"] == "recalled"
    assert abs(sum(conv["derived"]["terms"].values()) - conv["derived"]["value"]) < 1e-12
    assert {b["provenance"] for b in data["lemmas"]["L_F"]} == {"recalled", "derived"}
    assert data["corollary"]["exact"]["rate_exponent"] == -0.5


def test_bounds_latex(capsys):
    assert main(["bounds", "--latex", "--variant", "hf"]) == 0
    out = capsys.readouterr().out
    assert "\\alpha" in out and "[recalled]" in out and "[derived]" in out and "D''" in out


def test_bounds_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bounds", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--constants", "--latex", "--json", "--variant", "--F0_gap", "--D1", "--D2", "--sigma_H"):
        assert opt in out


@pytest.mark.parametrize("argv, word", [
    (["bounds", "--constants", "/nonexistent/c.toml"], "--constants: config file /nonexistent/c.toml does not exist"),
    (["bounds", "--L", "1"], "missing constant"),
    (["bounds", "--variant", "zz"], "variant"),
    (["bounds", "--L", "abc"], "--L"),
])
def test_bounds_bad_input_is_one_line_exit_2(argv, word, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err and "Traceback" not in err


def test_bounds_out_of_range_value(toml, capsys):
    assert main(["bounds", "--constants", toml, "--alpha", "3"]) == 2
    err = capsys.readouterr().err
    assert "alpha" in err and "1/L" in err and err.count("\n") == 1


def test_bounds_bad_toml(tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_text("L = = 1\n")
    assert main(["bounds", "--constants", str(p)]) == 2
    err = capsys.readouterr().err
    assert "--constants: config file" in err and "not valid TOML" in err
    p.write_text(Constants(**BASE).to_toml() + "Lfoo = 2\n")
    assert main(["bounds", "--constants", str(p)]) == 2
    assert "unknown constant" in capsys.readouterr().err
