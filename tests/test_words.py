"""The words a person reads: help wrapped to the terminal, one flag style, one name per task option,
"did you mean" hints, numbers read as numbers, plurals and one unit for accuracy."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from perfedavg.cli import build_parser, main
from perfedavg.errors import UsageError
from perfedavg.runs.config import load_run_config
from perfedavg.runs.registry import TASKS, task_spec
from perfedavg.words import closest, fill_block, plural

#: help is wrapped to the terminal but never wider than this (perfedavg.words.MAX_WIDTH, restated:
#: a test that read the limit from the code would pass whatever the code said)
WIDEST = 100


def all_parsers(parser: argparse.ArgumentParser, name: str = "perfedavg"):
    """``(command, parser)`` for the top level and every subcommand below it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from all_parsers(child, f"{name} {child_name}")


@pytest.mark.parametrize("columns, widest", [(80, 80), (250, WIDEST)])
def test_every_help_fits_the_terminal_and_prints_no_double_percent(columns, widest, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))
    seen = 0
    for command, parser in all_parsers(build_parser()):
        for line in parser.format_help().splitlines():
            seen += 1
            assert len(line) <= widest, f"{command} --help: {len(line)} characters: {line[:80]}..."
            assert "%%" not in line, f"{command} --help prints '%%': {line}"
    assert seen > 300  # every subcommand's help was read


def test_list_tasks_fits_the_terminal(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["run", "--list-tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith("  task.n_clients") for line in lines)


def test_fill_block_wraps_a_listing_row_under_its_text_column():
    row = "  alpha    " + "word " * 30
    lines = fill_block(row, 40).splitlines()
    assert len(lines) > 1 and all(len(line) <= 40 for line in lines)
    assert all(line.startswith(" " * 11) and line[11] != " " for line in lines[1:])


def test_every_flag_is_kebab_case():
    for command, parser in all_parsers(build_parser()):
        for action in parser._actions:
            for flag in action.option_strings:
                assert "_" not in flag, f"{command} {flag}: flags are kebab-case"


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["bounds", "--sigma_G", "1"], "--sigma-G"),
        (["bounds", "--F0_gap", "1"], "--F0-gap"),
        (["bounds", "--latx"], "did you mean --latex?"),
        (["run", "--alpha", "0.1"], "--set alpha=VALUE"),
        (["run", "--set", "alpha", "0.1"], "--set alpha=0.1"),
        (["run", "--set", "alpha"], "--set alpha=VALUE"),
        (["run", "--set", "alpah=0.1"], "did you mean 'alpha'?"),
        (["run", "--set", "algorithm=hff"], "did you mean 'hf'?"),
        (["run", "--set", "task=softmx"], "did you mean 'softmax'?"),
        (["run", "--set", "task.n_client=4"], "did you mean 'n_clients'?"),
        (["run", "--set", "task.clients=4"], "task.n_clients"),
        (["run", "--set", "task.name=mnist", "--set", "task.clients=4"], "task.n_clients"),
        (["run", "--set", "K=1.5"], "whole number"),
        (["run", "--set", "alpha=true"], "boolean"),
        (["run", "--set", "task.h=true"], "boolean"),
    ],
)
def test_a_slip_is_one_line_with_the_way_on(argv, hint, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "run")] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and hint in err, err
    assert not (tmp_path / "run").exists()


def test_a_whole_number_written_as_a_float_is_an_integer():
    cfg = load_run_config(None, ["K=1e3", "task.n_clients=2e1"])
    assert cfg.K == 1000 and isinstance(cfg.K, int)
    from perfedavg.runs.resolve import _typed_task_table

    assert _typed_task_table(cfg.task)["n_clients"] == 20


def test_every_task_names_its_users_n_clients():
    for name in TASKS:
        options = set(task_spec(name).options.__dataclass_fields__)
        assert "n_clients" in options and "clients" not in options, name


def test_a_boolean_constant_is_not_the_number_one(tmp_path, capsys):
    values = dict(L="true", rho=1, B=1, sigma_G=1, sigma_H=1, gamma_G=1, gamma_H=1, F0_gap=1)
    path = tmp_path / "c.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    assert main(["bounds", "--constants", str(path)]) == 2
    assert "boolean" in capsys.readouterr().err


def test_plurals_and_closest_names():
    assert [plural(n, "seed") for n in (0, 1, 3)] == ["0 seeds", "1 seed", "3 seeds"]
    assert plural(2, "entry", "entries") == "2 entries"
    assert closest("sigma_g", ["sigma_G", "sigma_H"]) == "sigma_G"
    assert closest("zzz", ["alpha", "beta"]) is None


def test_progress_bar_and_last_line_speak_percent(tmp_path, capsys):
    from perfedavg.runs.runner import _postfix

    assert _postfix({"grad_norm_sq_F": 0.1, "personalized_accuracy": 0.447}).endswith("acc=44.7%")
    argv = ["run", "--no-progress", "--no-plot", "--out", str(tmp_path / "r")]
    sets = ["K=1", "tau=1", "r=0.5", "D=4", "D1=4", "D2=4", "task.n_clients=4", "task.dim=3", "task.support=20"]
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 0
    assert "%" in capsys.readouterr().out


def test_counts_in_messages_agree_with_their_noun():
    from perfedavg.runs.holdout import held_out_users
    from theory.lemmas import all_lemmas

    with pytest.raises(UsageError, match=r"holds out 1 user, fewer than the split's 2 groups"):
        held_out_users(10, 1, seed=0, groups=[0] * 5 + [1] * 5)
    statement = next(st for st in all_lemmas() if len(st.arg_names) > 1)
    with pytest.raises(UsageError, match=r"needs values for"):
        statement.values_from({})
    with pytest.raises(UsageError, match=r"needs a value for"):
        statement.values_from(dict.fromkeys(statement.arg_names[1:], 1.0))


#: a Python name a reader of the help cannot use: ``module.CONSTANT`` or ``package.module.ClassName``
INTERNAL_NAME = re.compile(r"\b[a-z_]+\.(?:[a-z_]+\.)*(?:[A-Z][A-Z_]+|[A-Z][a-z]+[A-Za-z]*)\b")
#: names of that shape a reader can use: torch's public API (what bench compares against) and a placeholder
PUBLIC_NAMES = {"nn.Module", "torch.optim.SGD", "task.KEY"}


def test_help_names_options_and_commands_not_python_internals(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    found = []
    for command, parser in all_parsers(build_parser()):
        for line in parser.format_help().splitlines():
            found += [f"{command}: {m}" for m in INTERNAL_NAME.findall(line) if m not in PUBLIC_NAMES]
    assert found == []
    assert INTERNAL_NAME.findall("as partition.DEFAULT_CONCENTRATION, theory.constants.Constants reads")  # can fail


def test_reproduce_help_lists_every_subcommand(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    top = build_parser()
    reproduce = dict(all_parsers(top))["perfedavg reproduce"]
    names = next(a for a in reproduce._actions if isinstance(a, argparse._SubParsersAction)).choices
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    line = next(a.help for a in commands._choices_actions if a.dest == "reproduce")
    description = " ".join(reproduce.description.split())
    for name in names:
        assert f"({name})" in description, name
    assert "personalization" in line and "Table 1" in line


def test_bounds_latex_cites_derivations_by_its_path(capsys):
    """Every statement's reference names the file a reader can open: theory/DERIVATIONS.md, not DERIVATIONS.md."""
    assert main(["bounds", "--latex"]) == 0
    out = capsys.readouterr().out
    assert "DERIVATIONS.md" in out
    assert re.findall(r"(?<!theory/)DERIVATIONS\.md", out) == []


def test_a_sweep_or_constants_file_given_as_config_says_what_it_is(capsys):
    """`run --config` / `explain --config` on a sweep file or a constants file names the command or flag that
    reads it, instead of 'unknown option'."""
    assert main(["run", "--config", "examples/sweeps/alpha_h.toml", "--out", "/nonexistent/never"]) == 2
    err = capsys.readouterr().err
    assert "sweep file" in err and "perfedavg sweep examples/sweeps/alpha_h.toml" in err and "unknown" not in err
    assert main(["explain", "--config", "examples/constants.example.toml"]) == 2
    err = capsys.readouterr().err
    assert "constants file" in err and "--constants examples/constants.example.toml" in err and "unknown" not in err


def test_explain_reads_constants_files_as_bounds_does(capsys):
    """explain --constants takes the TOML constants file that bounds takes, and its help says so and names the
    command that writes the JSON one."""
    helps = dict(all_parsers(build_parser()))
    action = next(a for a in helps["perfedavg explain"]._actions if "--constants" in a.option_strings)
    assert "perfedavg reproduce constants" in action.help and "TOML" in action.help and "empirical/" not in action.help
    assert main(["explain", "--constants", "examples/constants.example.toml"]) == 0
    assert "estimated constants from examples/constants.example.toml" in capsys.readouterr().out


@pytest.mark.parametrize("argv, listed", [([], "reproduce"), (["reproduce"], "personalization")])
def test_a_command_without_its_subcommand_prints_the_help(argv, listed, capsys):
    assert main(argv) == 2
    printed = capsys.readouterr()
    assert "usage: perfedavg" in printed.out and listed in printed.out and "required" in printed.err


@pytest.mark.parametrize(
    "argv, meant",
    [(["bounds", "--variant", "hff"], "'hf'"), (["reproduce", "tabel1"], "'table1'"), (["chek"], "'check'")],
)
def test_a_misspelt_choice_gets_did_you_mean(argv, meant, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"did you mean {meant}?" in err and len(err.strip().splitlines()) == 1


def test_algorithms_are_named_as_the_figures_name_them(capsys):
    """bounds writes Per-FedAvg (FO), (HF) and (exact HVP), as the figures and Table 1 do, never (EXACT)."""
    from perfedavg.algorithms import ALGORITHM_NAMES

    assert main(["bounds", "--constants", "examples/constants.example.toml"]) == 0
    out = capsys.readouterr().out
    assert "EXACT" not in out
    for name in ("fo", "hf", "exact"):
        assert f"Convergence, {ALGORITHM_NAMES[name]}:" in out
    assert ALGORITHM_NAMES["exact"] == "Per-FedAvg (exact HVP)"


def test_run_help_says_what_a_run_without_config_uses(monkeypatch):
    """The option table of `run --help` gives, beside each default that the first run (no --config) replaces,
    the value that run uses: K, tau, alpha, beta as `perfedavg run` runs them."""
    from perfedavg.runs.config import FIRST_RUN

    monkeypatch.setenv("COLUMNS", "250")
    text = " ".join(dict(all_parsers(build_parser()))["perfedavg run"].format_help().split())
    changed = [k for k, v in FIRST_RUN.items() if k != "task" and load_run_config(None, []).to_dict()[k] == v]
    assert {"K", "tau", "alpha", "beta"} <= set(changed)
    defaults = {f.name: f.default for f in dataclasses.fields(type(load_run_config("examples/run.example.toml", [])))}
    for key in ("K", "tau", "alpha", "beta"):
        if defaults[key] != FIRST_RUN[key]:
            assert re.search(rf"\[default: {defaults[key]!s}; without --config: {FIRST_RUN[key]!s}\]", text), key


#: a default written in another style than ``[default: X]``: ``(default 20)``, ``(default: paper)``,
#: ``(>= 100, default 4000)``, ``(>= 2; default 3 quick, 5 full)``; a choice marked as the default
#: (``fo (first-order; default)``, ``cpu (default), cuda``) is not one
OTHER_DEFAULT_STYLE = re.compile(r"\(default\b(?!\))|[;,]\s+default\b(?!\))")


def test_every_help_writes_its_default_one_way():
    """Every option's help, and every description and epilog, of every parser writes a default as
    ``[default: X]`` in the string itself (the formatter prints help as written)."""
    found = []
    for command, parser in all_parsers(build_parser()):
        texts = [(action.dest, action.help) for action in parser._actions]
        texts += [("description", parser.description), ("epilog", parser.epilog)]
        found += [f"{command} {name}: {text}" for name, text in texts if text and OTHER_DEFAULT_STYLE.search(text)]
    assert found == []


@pytest.mark.parametrize(
    "text, other_style",
    [
        ("timed rounds (default 20)", True),
        ("how to split (default: paper)", True),
        ("draws (>= 100, default 4000)", True),
        ("seeds (>= 2; default 3 quick, 5 full)", True),
        ("batch (default 0: not)", True),
        ("cores (default: one per core (of this process))", True),
        ("timed rounds [default: 20]", False),
        ("draws (>= 100) [default: 4000]", False),
        ("seeds [default: 5; --quick: 1]", False),
        ("fo (first-order; default)", False),
        ("cpu (default), cuda or cuda:N", False),
    ],
)
def test_other_default_styles_are_found_and_choice_markers_spared(text, other_style):
    assert bool(OTHER_DEFAULT_STYLE.search(text)) is other_style


def test_seed_summary_says_one_seed_has_no_spread():
    from perfedavg.words import seed_summary

    assert seed_summary(1) == "1 seed (no spread over seeds)"
    assert seed_summary(5) == "5 seeds, mean ± sample std over seeds"
