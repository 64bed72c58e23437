"""``kassa-collector``: a thin dispatcher over the subcommand modules in ``collector.commands``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Sequence

import collector.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kassa-collector", description="kassa-monitor central collector")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(collector.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"collector.commands.{module_info.name}")
        add_parser = getattr(module, "add_parser", None)
        if callable(add_parser):
            add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
