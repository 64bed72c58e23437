"""The levels of a company's tree (``tree_levels``): their keys (what nodes carry as their kind),
their order, and the titles people read (the company's own, else a default).

Position 0 is the root (the company) and the last level holds registers (the store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.errors import Conflict, InvalidInput
from collector.accounts.names import clean_name
from collector.accounts.rights import Permission, authorize
from collector.accounts.schema import tree_levels
from collector.storage.schema import nodes

DEFAULT_LEVELS: tuple[str, ...] = ("company", "legal_entity", "brand", "region", "city", "store")


# What people read for the default level keys until the company names its levels itself.
DEFAULT_TITLES: dict[str, str] = {
    "company": "Компания", "legal_entity": "Юрлицо", "brand": "Бренд", "region": "Регион",
    "city": "Город", "store": "Магазин",
}
MAX_TITLE_LENGTH = 50  # tree_levels.title


@dataclass(frozen=True, slots=True)
class Level:
    position: int
    name: str  # the key nodes carry as their kind
    holds_registers: bool
    title: str = ""  # what people read: the company's own name for it, else the default title

    @property
    def shown(self) -> str:
        return self.title or DEFAULT_TITLES.get(self.name, self.name)


def check_level_names(names: Sequence[str]) -> list[str]:
    cleaned = [clean_name(n, "level name").lower() for n in names]
    if len(cleaned) < 2:
        raise InvalidInput("a tree needs at least two levels: the company and the store",
                           ru="Нужно хотя бы два уровня: компания и магазин.")
    if len(set(cleaned)) != len(cleaned):
        raise InvalidInput("level names must be different from each other",
                           ru="Названия уровней не должны повторяться.")
    return cleaned


def levels(conn: sa.Connection, tenant_id: int) -> list[Level]:
    rows = conn.execute(
        sa.select(tree_levels.c.position, tree_levels.c.name, tree_levels.c.holds_registers, tree_levels.c.title)
        .where(tree_levels.c.tenant_id == tenant_id)
        .order_by(tree_levels.c.position)
    )
    return [Level(r.position, r.name, bool(r.holds_registers), r.title or "") for r in rows]


def level_titles(conn: sa.Connection, tenant_id: int) -> dict[str, str]:
    """Level key (a node's kind) → what people read for it."""
    return {level.name: level.shown for level in levels(conn, tenant_id)}


def set_level_titles(
    conn: sa.Connection, actor: Actor, tenant_id: int, titles: Mapping[str, str], *, at: datetime
) -> None:
    """The company names its levels (an empty title restores the default); the keys nodes carry stay."""
    authorize(conn, actor, tenant_id, Permission.MANAGE_COMPANY, None)
    current = levels(conn, tenant_id)
    unknown = sorted(set(titles) - {level.name for level in current})
    if unknown:
        raise InvalidInput(f"unknown level(s) {', '.join(unknown)}", ru="Такого уровня в структуре нет.")
    chosen: dict[str, str | None] = {}
    for level in current:
        title = " ".join(titles.get(level.name, level.title).split())
        if len(title) > MAX_TITLE_LENGTH:
            raise InvalidInput(f"a level title is at most {MAX_TITLE_LENGTH} characters",
                               ru=f"Название уровня — не длиннее {MAX_TITLE_LENGTH} символов.")
        chosen[level.name] = title or None
    shown = [chosen_title or DEFAULT_TITLES.get(name, name) for name, chosen_title in chosen.items()]
    if len({text.lower() for text in shown}) != len(shown):
        raise InvalidInput("level titles must differ from each other", ru="Названия уровней не должны повторяться.")
    for name, stored in chosen.items():
        conn.execute(
            sa.update(tree_levels)
            .where(tree_levels.c.tenant_id == tenant_id, tree_levels.c.name == name)
            .values(title=stored)
        )
    audit.record(conn, actor, tenant_id=tenant_id, action="tree.level_titles", target_type="tenant",
                 target_id=tenant_id, at=at, details={"titles": dict(chosen)})


def set_levels(
    conn: sa.Connection, actor: Actor, tenant_id: int, names: Sequence[str], *, at: datetime
) -> None:
    """Rename/reorder the tenant's levels; every level used by a node must stay."""
    authorize(conn, actor, tenant_id, Permission.MANAGE_TREE, None)
    new = check_level_names(names)
    used = set(
        conn.execute(sa.select(nodes.c.kind).where(nodes.c.tenant_id == tenant_id).distinct()).scalars()
    )
    if dropped := sorted(used - set(new)):
        raise Conflict(f"level(s) {', '.join(dropped)} are still used by nodes",
                       ru=f"Уровни «{'», «'.join(dropped)}» ещё используются узлами: сначала перенесите или удалите их.")
    child = nodes.alias("child")
    pairs = conn.execute(
        sa.select(nodes.c.kind, child.c.kind)
        .join(child, child.c.parent_id == nodes.c.id)
        .where(nodes.c.tenant_id == tenant_id)
        .distinct()
    ).all()
    for parent_kind, child_kind in pairs:
        if new.index(child_kind) <= new.index(parent_kind):
            raise Conflict(f"a {child_kind} sits under a {parent_kind}; the new order would invert them",
                           ru=f"Сейчас «{child_kind}» стоит под «{parent_kind}»: новый порядок уровней их перевернул бы.")
    kept_titles = {level.name: level.title or None for level in levels(conn, tenant_id)}
    conn.execute(sa.delete(tree_levels).where(tree_levels.c.tenant_id == tenant_id))
    conn.execute(
        sa.insert(tree_levels),
        [
            {"tenant_id": tenant_id, "position": i, "name": n, "holds_registers": i == len(new) - 1,
             "title": kept_titles.get(n)}
            for i, n in enumerate(new)
        ],
    )
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="tree.levels",
        target_type="tenant",
        target_id=tenant_id,
        at=at,
        details={"levels": new},
    )
