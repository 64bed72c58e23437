"""`kassa-collector enrollment token|revoke|broker-setup`: agent enrollment (see collector.enrollment.cli)."""

from collector.enrollment.cli import add_parser

__all__ = ["add_parser"]
