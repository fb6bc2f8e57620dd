"""The ``perfedavg`` command line.

Each subcommand lives in the module that owns its subject and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed arguments and returning an exit status).  Modules are imported lazily so that
``perfedavg bounds`` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from perfedavg.errors import Interrupted, UsageError
from perfedavg.words import HelpFormatter, closest, did_you_mean

#: subcommand name -> module that defines ``register(subparsers)``
COMMANDS = {
    "run": "perfedavg.runs.cli",
    "bench": "perfedavg.bench.cli",
    "bounds": "theory.cli",
    "check": "synthetic.check_cli",
    "reproduce": "empirical.cli",
    "data": "empirical.data_cli",
    "figures": "figures.cli",
    "explain": "figures.explain",
    "sweep": "perfedavg.sweep.cli",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2 (argparse's own convention), and help text
    wrapped to the terminal by the one formatter of :class:`perfedavg.words.HelpFormatter`."""

    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = HelpFormatter  # every parser, nested ones included: one look
        super().__init__(*args, **kwargs)

    def error(self, message):
        # a command given without its subcommand (`perfedavg`, `perfedavg reproduce`): show what there is
        subcommands = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        if message.startswith("the following arguments are required") and any(
            str(a.metavar or a.dest) in message for a in subcommands
        ):
            self.print_help()
        # "perfedavg: error: <message>" for the top level, "perfedavg: error: perfedavg run: <message>" below it
        raise UsageError(message if self.prog == "perfedavg" else f"{self.prog}: {message}")

    def _check_value(self, action, value):
        # argparse's "invalid choice" with the closest choice as a hint, as a misspelt option or --set key gets
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(repr, action.choices))
            hint = did_you_mean(value, [str(c) for c in action.choices])
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {choices}){hint}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="perfedavg",
        description="Per-FedAvg toolkit: run FedAvg / Per-FedAvg (FO, HF, exact), "
        "evaluate the paper's bounds, check them against measurement, and draw the figures.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # subcommand not built yet in this checkout
            raise
        module.register(sub)
    if "bounds" in sub.choices:  # theory builds no task: the synthetic tasks' exact constants come from here
        sub.choices["bounds"].set_defaults(task_constants=_task_constants)
    return parser


def _task_constants(name: str, overrides: list[str], flags: dict[str, float], notes: list[str] | None = None):
    """``perfedavg bounds --task NAME``'s constants (:func:`figures.explain.task_constants`; torch)."""
    from figures.explain import task_constants

    return task_constants(name, overrides, flags, notes)


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every ``--flag`` of ``parser`` and of the subcommands below it."""
    flags = []
    for action in parser._actions:
        flags += [s for s in action.option_strings if s.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                flags += _option_strings(child)
    return flags


def _hint(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> str:
    """What the user probably meant by the arguments argparse did not recognize: ``--set KEY VALUE``
    written for ``--set KEY=VALUE``, or a flag spelt another way (``--sigma_G`` for ``--sigma-G``)."""
    bare = [item for item in getattr(args, "overrides", None) or [] if "=" not in item]
    if bare and not extra[0].startswith("-"):
        return f"; --set takes one KEY=VALUE: write --set {bare[0]}={extra[0]}"
    flag = next((e.split("=", 1)[0] for e in extra if e.startswith("--")), None)
    if flag is None:
        return ""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = _option_strings(sub.choices[args.command])
    kebab = flag.replace("_", "-")
    if kebab != flag and kebab in flags:
        return f"; flags are written with '-', not '_': {kebab}"
    if hasattr(args, "overrides"):  # a config option given as a flag: --alpha 0.1 for --set alpha=0.1
        from perfedavg.engine.config import field_docs

        option = closest(flag[2:], [name for name in field_docs() if name != "task"])
        if option is not None:
            return f"; config options are set with --set: --set {option}=VALUE"
    match = closest(flag, flags)
    return f"; did you mean {match}?" if match else ""


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # named with the subcommand they were given to (argparse reports them at the top level)
            raise UsageError(
                f"perfedavg {args.command}: unrecognized arguments: {' '.join(extra)}{_hint(parser, args, extra)}"
            )
        status = args.func(args)
    except UsageError as exc:
        print(f"perfedavg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:  # stopped by a signal where it can resume: what is kept, how to go on
        print(f"perfedavg: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("perfedavg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``perfedavg run --list-tasks | head``): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0
    except (
        OSError
    ) as exc:  # the file system refused mid-work (disk full, a folder removed): one line, never a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"perfedavg: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
