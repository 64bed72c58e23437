"""OFD contracts per register (activated, paid-until, tariff, the operator): input to the OFD-contract
rule and to the OFD diagnosis."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa

from collector.storage.dialect import member_of, upsert_insert
from collector.storage.rows import ContractRow
from collector.storage.schema import ofd_contracts


def upsert_contract(conn: sa.Connection, contract: ContractRow) -> None:
    stmt = upsert_insert(conn, ofd_contracts).values(
        register_id=contract.register_id,
        activated=contract.activated,
        paid_until=contract.paid_until,
        tariff=contract.tariff,
        updated_at=contract.updated_at,
        ofd_operator=contract.ofd_operator,
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[ofd_contracts.c.register_id],
            set_={name: stmt.excluded[name] for name in ("activated", "paid_until", "tariff", "updated_at", "ofd_operator")},
        )
    )


def load_contracts(conn: sa.Connection, register_ids: Collection[str]) -> dict[str, ContractRow]:
    """Contracts of the given registers; a register without one is absent (no data ≠ unpaid)."""
    rows = conn.execute(sa.select(ofd_contracts).where(member_of(conn, ofd_contracts.c.register_id, register_ids)))
    return {r.register_id: ContractRow(**r._asdict()) for r in rows}
