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

from perfedavg.errors import UsageError

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
    """argparse with one-line errors and exit status 2 (argparse's own convention)."""

    def error(self, message):
        # "perfedavg: error: <message>" for the top level, "perfedavg: error: perfedavg run: <message>" below it
        raise UsageError(message if self.prog == "perfedavg" else f"{self.prog}: {message}")


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
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # named with the subcommand they were given to (argparse reports them at the top level)
            raise UsageError(f"perfedavg {args.command}: unrecognized arguments: {' '.join(extra)}")
        status = args.func(args)
    except UsageError as exc:
        print(f"perfedavg: error: {exc}", file=sys.stderr)
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
