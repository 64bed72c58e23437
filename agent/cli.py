"""``kassa-agent``: the edge agent's command line.

Subcommands are plug-ins: every module in ``agent.commands`` that defines
``add_parser(subparsers) -> ArgumentParser`` is one, and sets ``func=handler`` on its parser
(``handler(args) -> int`` exit code). Adding a subcommand = adding a module; this file does not
change. A module that fails to import is reported and skipped, so one broken command never takes
the installer's ``probe``/``detect`` down with it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

import agent.commands

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool the pipe ended

EPILOG = """\
first steps on a POS computer:
  kassa-agent detect                  find the register: port, protocol, baud rate
  kassa-agent probe /dev/ttyACM0      read it once and show what will be published
  kassa-agent <command> --help        details of one command
"""


def command_modules() -> list[str]:
    return sorted(f"{agent.commands.__name__}.{m.name}" for m in pkgutil.iter_modules(agent.commands.__path__))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kassa-agent",
        description="Monitoring agent for cash registers (ККТ): reads the ФН, shift and OFD state and publishes it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # report and keep the other commands usable
            print(f"kassa-agent: skipping {name}: it failed to import: {exc}", file=sys.stderr)
            continue
        add = getattr(module, "add_parser", None)
        if callable(add):
            add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a pipe's buffered output fails here, not in the interpreter's exit
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return reader_went_away()
    return code


def reader_went_away() -> int:
    """``kassa-agent probe --json | head``: the reader stopped reading; end quietly, like a shell tool
    killed by SIGPIPE, instead of a traceback (and the interpreter's own failed flush at exit)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
