"""Names people give to things in the company (nodes, levels, groups, КЭП applicants): one
cleaning rule — whitespace folded, never empty, bounded — with a Russian refusal."""

from __future__ import annotations

from collector.accounts.errors import InvalidInput

MAX_NAME_LENGTH = 200


def clean_name(name: str, what: str = "name") -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidInput(f"the {what} must not be empty", ru="Заполните поле: пустое значение не принимается.")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidInput(f"the {what} must be at most {MAX_NAME_LENGTH} characters",
                           ru=f"Слишком длинное значение: не больше {MAX_NAME_LENGTH} символов.")
    return cleaned
