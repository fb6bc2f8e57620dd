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
    for word in (
        "[recalled]",
        "[derived]",
        "DERIVED explicit upper bound",
        "RECALLED shape",
        "not an upper bound",
        "dominates",
        "optimization",
        "client sampling",
        "local drift",
        "bias floor",
        "Per-FedAvg (FO)",
        "Per-FedAvg (HF)",
        "corollary",
    ):
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
        argv += [f"--{k.replace('_', '-')}", str(v)]
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
    for opt in ("--constants", "--latex", "--json", "--variant", "--F0-gap", "--D1", "--D2", "--sigma-H"):
        assert opt in out


@pytest.mark.parametrize(
    "argv, word",
    [
        (
            ["bounds", "--constants", "/nonexistent/c.toml"],
            "--constants: config file /nonexistent/c.toml does not exist",
        ),
        (["bounds", "--L", "1"], "missing constant"),
        (["bounds", "--variant", "zz"], "variant"),
        (["bounds", "--L", "abc"], "--L"),
    ],
)
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


def _constants_json(tmp_path, rho_estimated: bool):
    """A document in the format of ``perfedavg reproduce constants`` (empirical.constants.document): the writer
    puts 0.0 in ``constants`` for a field it did not estimate; ``per_round`` says null."""
    constants = {
        **BASE,
        "rho": 0.0 if not rho_estimated else 2.0,
        "alpha": 0.01,
        "beta": 0.001,
        "delta": 0.001,
        "tau": 10,
        "K": 30,
        "r": 0.2,
        "n": 50,
        "D": 40,
        "D1": 40,
        "D2": 40,
    }
    per_round = [
        {
            "round": 0,
            "L": 1.0,
            "B": 1.0,
            "sigma_G": 1.0,
            "sigma_H": 1.0,
            "gamma_G": 0.5,
            "gamma_H": 0.5,
            "rho": 2.0 if rho_estimated else None,
            "f": 0.7,
            "per_user": {},
        }
    ]
    p = tmp_path / "constants.json"
    p.write_text(
        json.dumps(
            {
                "run": "runs/x",
                "task": "mnist",
                "constants": constants,
                "per_round": per_round,
                "provenance": {},
                "options": {"rho_directions": 2 if rho_estimated else 0},
            }
        )
    )
    return str(p)


def test_bounds_reads_the_reproduce_constants_json(tmp_path, capsys):
    path = _constants_json(tmp_path, rho_estimated=True)
    assert main(["bounds", "--constants", path, "--json", "--variant", "exact"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["constants"]["rho"] == 2.0 and out["missing"] == []
    assert isinstance(out["convergence"]["exact"]["derived"]["value"], float)


def test_an_unestimated_constant_is_missing_never_zero(tmp_path, capsys):
    """rho skipped (per_round null, 0.0 in 'constants'): every value that needs rho is 'not evaluable'; the
    rest is evaluated; a flag supplies the missing value."""
    path = _constants_json(tmp_path, rho_estimated=False)
    assert main(["bounds", "--constants", path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # rho_sample, not given, follows rho: NaN too, listed under rho
    assert out["missing"] == ["rho"] and out["constants"]["rho"] == "nan" and out["constants"]["rho_sample"] == "nan"
    assert out["per_sample_assumed"] == ["B_sample", "L_sample", "rho_sample"]
    L_F = {v["provenance"]: v for v in out["lemmas"]["L_F"]}
    assert L_F["derived"]["value"] == "not evaluable" and L_F["derived"]["needs"] == ["rho"]
    bias = {v["provenance"]: v for v in out["lemmas"]["bias"]}
    assert isinstance(bias["derived"]["value"], float)  # the exact bias does not involve rho
    assert out["convergence"]["exact"] == {"value": "not evaluable", "needs": ["rho"]}
    assert isinstance(out["fedavg_bound"]["value"], float)  # alpha = 0: no rho
    assert main(["bounds", "--constants", path]) == 0
    text = capsys.readouterr().out
    assert "rho=MISSING" in text and "not evaluable (needs rho)" in text
    assert main(["bounds", "--constants", path, "--rho", "2", "--json", "--variant", "exact"]) == 0
    assert json.loads(capsys.readouterr().out)["missing"] == []


def test_bounds_distance_and_hf_flags_evaluate_section_6(toml, capsys):
    assert (
        main(
            [
                "bounds",
                "--constants",
                toml,
                "--json",
                "--tv",
                "0.3",
                "--w1",
                "0.5",
                "--L-theta",
                "2",
                "--rho-theta",
                "1",
                "--g-norm",
                "1.5",
            ]
        )
        == 0
    )
    lem = json.loads(capsys.readouterr().out)["lemmas"]
    assert lem["gamma_G2_tv"][0]["value"] == pytest.approx(4 * BASE["B"] ** 2 * 0.3**2)
    assert lem["gamma_H2_tv"][0]["value"] == pytest.approx(4 * BASE["L"] ** 2 * 0.3**2)
    assert lem["gamma_G2_w1"][0]["value"] == pytest.approx(2**2 * 0.5**2)
    assert lem["gamma_H2_w1"][0]["value"] == pytest.approx(1**2 * 0.5**2)
    assert lem["hf_hvp_error"][0]["value"] == pytest.approx(BASE["rho"] * 0.001 * 1.5**2 / 2)


@pytest.mark.parametrize(
    "flag, value, word",
    [
        ("--tv", "1.5", "--tv=1.5 is out of range"),
        ("--w1", "-1", "--w1=-1 is out of range"),
        ("--L-theta", "inf", "--L-theta=inf is out of range"),
    ],
)
def test_bounds_bad_distance_flag_is_one_line_exit_2(toml, flag, value, word, capsys):
    assert main(["bounds", "--constants", toml, flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err


def test_bounds_text_fits_a_terminal(capsys):
    """Every line of `perfedavg bounds` (all statements, TV / W1 ones too) within perfedavg.words.MAX_WIDTH."""
    from perfedavg.words import MAX_WIDTH

    argv = ["bounds", "--task", "softmax", "--tv", "0.3", "--w1", "0.5", "--L-theta", "2", "--rho-theta", "1"]
    assert main([*argv, "--g-norm", "1"]) == 0
    out = capsys.readouterr().out
    wide = [line for line in out.splitlines() if len(line) > MAX_WIDTH]
    assert not wide, wide
    assert "constants: L=" in out and "MSE of the HF direction [derived]" in out
