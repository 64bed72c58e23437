"""Write the MQTT contract's JSON Schema files to protocol/mqtt/schema/ (run after changing a model).

    .venv/bin/python scripts/export_mqtt_schema.py           # rewrite the files
    .venv/bin/python scripts/export_mqtt_schema.py --check   # exit 1 when the files are stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protocol.mqtt.schema import SCHEMA_DIR, rendered_schemas


def stale_files(directory: Path) -> list[str]:
    """Names of schema files that are missing, different or no longer generated."""
    expected = rendered_schemas()
    stale = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text
    ]
    stale += sorted(path.name for path in directory.glob("*.json") if path.name not in expected)
    return stale


def export(directory: Path) -> list[str]:
    """Rewrite every schema file and delete ones no model produces; returns what changed."""
    changed = stale_files(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected = rendered_schemas()
    for name, text in expected.items():
        (directory / name).write_text(text, encoding="utf-8")
    for path in directory.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files, exit 1 if any")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="target directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.dir)
        for name in stale:
            print(f"stale: {args.dir / name}")
        return 1 if stale else 0
    for name in export(args.dir):
        print(f"wrote {args.dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
