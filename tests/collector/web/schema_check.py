"""A small JSON Schema (2020-12) checker for the subset pydantic emits, used to validate real API
responses against the OpenAPI document (``jsonschema`` is not a dependency of the project).

It refuses schema keywords it does not implement, so a schema it cannot check fails loudly
instead of passing silently.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

_ANNOTATIONS = {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class SchemaMismatch(AssertionError):
    pass


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _check_format(value: Any, fmt: str, where: str) -> None:
    if not isinstance(value, str):
        return
    try:
        if fmt == "date-time":
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.utcoffset() is None:
                raise ValueError("no time zone")
        elif fmt == "date":
            date.fromisoformat(value)
    except ValueError as exc:
        raise SchemaMismatch(f"{where}: {value!r} is not a {fmt}: {exc}") from None


class Validator:
    """``closed``: an object schema listing properties admits no others (catches undocumented fields)."""

    def __init__(self, components: dict[str, Any], *, closed: bool = True) -> None:
        self.components = components
        self.closed = closed

    def _resolve(self, reference: str) -> dict[str, Any]:
        prefix = "#/components/schemas/"
        if not reference.startswith(prefix):
            raise SchemaMismatch(f"unsupported $ref {reference}")
        return self.components[reference[len(prefix) :]]

    def validate(self, value: Any, schema: dict[str, Any], where: str = "$") -> None:
        for keyword, rule in schema.items():
            if keyword in _ANNOTATIONS:
                continue
            check = getattr(self, "_kw_" + keyword.replace("$", ""), None)
            if check is None:
                raise SchemaMismatch(f"{where}: schema keyword {keyword!r} is not supported by this checker")
            check(value, rule, schema, where)

    def _kw_ref(self, value: Any, rule: str, schema: dict[str, Any], where: str) -> None:
        self.validate(value, self._resolve(rule), where)

    def _kw_type(self, value: Any, rule: str | list[str], schema: dict[str, Any], where: str) -> None:
        names = [rule] if isinstance(rule, str) else rule
        if not any(_is_type(value, name) for name in names):
            raise SchemaMismatch(f"{where}: {value!r} is not of type {rule}")

    def _kw_enum(self, value: Any, rule: list[Any], schema: dict[str, Any], where: str) -> None:
        if value not in rule:
            raise SchemaMismatch(f"{where}: {value!r} not in {rule}")

    def _kw_const(self, value: Any, rule: Any, schema: dict[str, Any], where: str) -> None:
        if value != rule:
            raise SchemaMismatch(f"{where}: {value!r} != {rule!r}")

    def _kw_anyOf(self, value: Any, rule: list[dict[str, Any]], schema: dict[str, Any], where: str) -> None:
        errors = []
        for option in rule:
            try:
                self.validate(value, option, where)
                return
            except SchemaMismatch as exc:
                errors.append(str(exc))
        raise SchemaMismatch(f"{where}: no anyOf option matches: {errors}")

    def _kw_allOf(self, value: Any, rule: list[dict[str, Any]], schema: dict[str, Any], where: str) -> None:
        for option in rule:
            self.validate(value, option, where)

    def _kw_properties(self, value: Any, rule: dict[str, Any], schema: dict[str, Any], where: str) -> None:
        if not isinstance(value, dict):
            return
        for name, sub in rule.items():
            if name in value:
                self.validate(value[name], sub, f"{where}.{name}")
        if self.closed and "additionalProperties" not in schema:
            undocumented = sorted(set(value) - set(rule))
            if undocumented:
                raise SchemaMismatch(f"{where}: undocumented properties {undocumented}")

    def _kw_required(self, value: Any, rule: list[str], schema: dict[str, Any], where: str) -> None:
        if isinstance(value, dict):
            missing = [name for name in rule if name not in value]
            if missing:
                raise SchemaMismatch(f"{where}: missing required {missing}")

    def _kw_additionalProperties(self, value: Any, rule: bool | dict[str, Any], schema: dict[str, Any], where: str) -> None:
        if not isinstance(value, dict):
            return
        extra = [name for name in value if name not in schema.get("properties", {})]
        for name in extra:
            if rule is False:
                raise SchemaMismatch(f"{where}: unexpected property {name!r}")
            if isinstance(rule, dict):
                self.validate(value[name], rule, f"{where}.{name}")

    def _kw_propertyNames(self, value: Any, rule: dict[str, Any], schema: dict[str, Any], where: str) -> None:
        if isinstance(value, dict):
            for name in value:
                self.validate(name, rule, f"{where}[key {name!r}]")

    def _kw_items(self, value: Any, rule: dict[str, Any], schema: dict[str, Any], where: str) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                self.validate(item, rule, f"{where}[{index}]")

    def _kw_format(self, value: Any, rule: str, schema: dict[str, Any], where: str) -> None:
        _check_format(value, rule, where)

    def _bound(self, value: Any, ok: bool, message: str, where: str) -> None:
        if not ok:
            raise SchemaMismatch(f"{where}: {value!r} {message}")

    def _kw_minimum(self, value: Any, rule: float, schema: dict[str, Any], where: str) -> None:
        if _is_type(value, "number"):
            self._bound(value, value >= rule, f"< minimum {rule}", where)

    def _kw_maximum(self, value: Any, rule: float, schema: dict[str, Any], where: str) -> None:
        if _is_type(value, "number"):
            self._bound(value, value <= rule, f"> maximum {rule}", where)

    def _kw_minLength(self, value: Any, rule: int, schema: dict[str, Any], where: str) -> None:
        if isinstance(value, str):
            self._bound(value, len(value) >= rule, f"shorter than {rule}", where)

    def _kw_maxLength(self, value: Any, rule: int, schema: dict[str, Any], where: str) -> None:
        if isinstance(value, str):
            self._bound(value, len(value) <= rule, f"longer than {rule}", where)

    def _kw_minItems(self, value: Any, rule: int, schema: dict[str, Any], where: str) -> None:
        if isinstance(value, list):
            self._bound(value, len(value) >= rule, f"has fewer than {rule} items", where)

    def _kw_maxItems(self, value: Any, rule: int, schema: dict[str, Any], where: str) -> None:
        if isinstance(value, list):
            self._bound(value, len(value) <= rule, f"has more than {rule} items", where)

    def _kw_pattern(self, value: Any, rule: str, schema: dict[str, Any], where: str) -> None:
        if isinstance(value, str):
            self._bound(value, re.search(rule, value) is not None, f"does not match {rule}", where)
