"""The documents a КЭП issuer asks for, and the customer's uploads of them.

The issuer names the documents when it moves an order to «запрошены документы»; the customer
uploads a file per document (PDF, JPEG or PNG, recognised by content, at most
``MAX_DOCUMENT_BYTES``) and, once every one is there, says the documents are sent. Refusals are
in Russian: the customer reads them beside the upload form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.errors import InvalidInput, NotFound
from collector.accounts.rights import Permission, authorize
from collector.accounts.schema import kep_documents, kep_orders, users

MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
DOCUMENT_KINDS: dict[str, str] = {
    "passport": "Паспорт владельца КЭП (разворот с фото и страница с регистрацией)",
    "snils": "СНИЛС владельца КЭП",
    "inn": "Свидетельство ИНН владельца КЭП",
    "appointment": "Решение или приказ о назначении руководителя",
    "power_of_attorney": "Машиночитаемая доверенность (МЧД) сотрудника",
    "application": "Подписанное заявление на выпуск сертификата",
}
# Magic bytes → (content type, what to call it); the file's name and claimed type are not trusted.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


@dataclass(frozen=True, slots=True)
class StoredDocument:
    id: int
    kind: str
    filename: str
    content_type: str
    size: int
    uploaded_at: datetime
    uploaded_by: str | None


def check_kinds(kinds: Sequence[str]) -> list[str]:
    """The requested kinds, de-duplicated in order; an unknown one is refused naming the known ones."""
    unknown = [kind for kind in kinds if kind not in DOCUMENT_KINDS]
    if unknown:
        raise InvalidInput(f"unknown document kind {unknown[0]!r}; known: {', '.join(DOCUMENT_KINDS)}")
    if not kinds:
        raise InvalidInput("name at least one document to request")
    return list(dict.fromkeys(kinds))


def content_type_of(data: bytes) -> str:
    if not data:
        raise InvalidInput("Файл пустой.")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(f"Файл больше {MAX_DOCUMENT_BYTES // (1024 * 1024)} МБ: сожмите скан или разделите его.")
    for magic, content_type in _SIGNATURES:
        if data.startswith(magic):
            return content_type
    raise InvalidInput("Загрузите скан в PDF, JPEG или PNG: файлы других типов не принимаются.")


def requested(conn: sa.Connection, tenant_id: int, order_id: int) -> list[str]:
    found = conn.execute(
        sa.select(kep_orders.c.requested_documents).where(
            kep_orders.c.id == order_id, kep_orders.c.tenant_id == tenant_id
        )
    ).first()
    if found is None:
        raise NotFound(f"КЭП order {order_id} not found")
    return [kind for kind in (found.requested_documents or []) if kind in DOCUMENT_KINDS]


def add_document(
    conn: sa.Connection, actor: Actor, tenant_id: int, order_id: int, kind: str, filename: str, data: bytes, *,
    at: datetime,
) -> int:
    """Store one upload for a requested document of an order that is waiting for documents."""
    authorize(conn, actor, tenant_id, Permission.KEP_ORDERS, None)
    state = conn.execute(
        sa.select(kep_orders.c.state).where(kep_orders.c.id == order_id, kep_orders.c.tenant_id == tenant_id)
    ).scalar_one_or_none()
    if state is None:
        raise NotFound(f"КЭП order {order_id} not found")
    if state != "documents_requested":
        raise InvalidInput("Документы по этой заявке сейчас не запрошены.")
    if kind not in requested(conn, tenant_id, order_id):
        raise InvalidInput("Выберите документ из списка запрошенных.")
    content_type = content_type_of(data)
    name = " ".join(filename.split())[:200] or "документ"
    document_id = int(
        conn.execute(
            sa.insert(kep_documents)
            .values(tenant_id=tenant_id, order_id=order_id, kind=kind, filename=name, content_type=content_type,
                    size=len(data), content=data, uploaded_by=actor.user_id, uploaded_at=at)
            .returning(kep_documents.c.id)
        ).scalar_one()
    )
    audit.record(conn, actor, tenant_id=tenant_id, action="kep.document", target_type="kep_order",
                 target_id=order_id, at=at, details={"kind": kind, "filename": name, "size": len(data)})
    return document_id


def documents(conn: sa.Connection, tenant_id: int, order_ids: Sequence[int]) -> dict[int, list[StoredDocument]]:
    """The uploads of these orders (metadata only), oldest first."""
    found: dict[int, list[StoredDocument]] = {order_id: [] for order_id in order_ids}
    if not order_ids:
        return found
    rows = conn.execute(
        sa.select(kep_documents.c.id, kep_documents.c.order_id, kep_documents.c.kind, kep_documents.c.filename,
                  kep_documents.c.content_type, kep_documents.c.size, kep_documents.c.uploaded_at,
                  users.c.email)
        .select_from(kep_documents.outerjoin(users, users.c.id == kep_documents.c.uploaded_by))
        .where(kep_documents.c.tenant_id == tenant_id, kep_documents.c.order_id.in_(list(order_ids)))
        .order_by(kep_documents.c.id)
    )
    for r in rows:
        found[r.order_id].append(
            StoredDocument(r.id, r.kind, r.filename, r.content_type, r.size, r.uploaded_at, r.email)
        )
    return found


def contents(conn: sa.Connection, order_id: int) -> list[tuple[int, str, str, bytes]]:
    """Every upload of an order as (id, kind, file name, bytes), for the issuer (the operator CLI)."""
    rows = conn.execute(
        sa.select(kep_documents.c.id, kep_documents.c.kind, kep_documents.c.filename, kep_documents.c.content)
        .where(kep_documents.c.order_id == order_id)
        .order_by(kep_documents.c.id)
    )
    return [(int(r.id), r.kind, r.filename, bytes(r.content)) for r in rows]


def missing(conn: sa.Connection, tenant_id: int, order_id: int) -> list[str]:
    """Requested kinds with no upload yet."""
    uploaded = {document.kind for document in documents(conn, tenant_id, [order_id])[order_id]}
    return [kind for kind in requested(conn, tenant_id, order_id) if kind not in uploaded]
