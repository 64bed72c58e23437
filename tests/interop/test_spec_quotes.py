"""Every interoperability case names its spec line: the «quotes» in the docstrings must be in it.

The spec lives beside the repository (``../shared/specs/kkt-protocols.md``) on the team's
machines; a checkout without it cannot check the wording and says so.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from tests.interop import test_atol_interop, test_shtrih_interop

SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "kkt-protocols.md"
MODULES = [test_shtrih_interop, test_atol_interop]


def _cases() -> list[tuple[str, str]]:
    return [
        (f"{module.__name__.rsplit('.', 1)[-1]}::{name}", inspect.getdoc(function) or "")
        for module in MODULES
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("test_")
    ]


def _squash(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("case", "doc"), _cases(), ids=[case for case, _ in _cases()])
def test_case_names_a_spec_section_and_quotes_it(case: str, doc: str) -> None:
    assert re.search(r"§\d", doc), f"{case}: no spec section in its docstring"
    quotes = re.findall(r"«(.+?)»", doc, flags=re.S)
    assert quotes, f"{case}: no «quote» of the spec line it follows"
    if not SPEC.exists():
        pytest.skip(f"{SPEC} is not here: quotes not checked against the spec text")
    spec = _squash(SPEC.read_text(encoding="utf-8"))
    for quote in quotes:
        for part in _squash(quote).split(" … "):  # an ellipsis joins two pieces of one line
            assert part.strip() in spec, f"{case}: «{part}» is not in {SPEC.name}"
