"""``kassa-collector kep``: the КЭП issuer's side of the order workflow, for the service provider's
staff — list orders, request documents, issue (from the .cer file the authority produced) and
reject. No user of a customer company can make these moves; they see the status on their page.

    kassa-collector kep list --db URL [--state documents_received]
    kassa-collector kep request-documents --db URL 12 --document passport --document snils
    kassa-collector kep documents --db URL 12 --out ./order-12      # the customer's uploads, as files
    kassa-collector kep issue --db URL 12 --cer certificate.cer
    kassa-collector kep reject --db URL 12 --reason "паспорт нечитаем"
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from collector.accounts import kep, kep_documents
from collector.accounts.audit import Actor
from collector.accounts.certificates import MAX_CERTIFICATE_BYTES, parse_certificate
from collector.accounts.cli_support import add_db_argument, run_in_transaction
from collector.accounts.errors import InvalidInput, NotFound
from collector.accounts.schema import kep_orders
from collector.storage.schema import tenants

PROG = "kassa-collector kep"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("kep", help="the КЭП issuer's side: list orders, request documents, issue, reject")
    actions = parser.add_subparsers(dest="kep_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="orders of every company, newest first")
    add_db_argument(listing)
    listing.add_argument("--state", choices=[state.value for state in kep.KepState], help="only orders in this state")
    listing.set_defaults(func=run_list)

    ask = actions.add_parser("request-documents", help="ask the customer for documents (they upload them)")
    add_db_argument(ask)
    ask.add_argument("order", type=int)
    ask.add_argument("--document", action="append", required=True, choices=list(kep_documents.DOCUMENT_KINDS),
                     help="a document to ask for (repeat the option for several)")
    ask.add_argument("--note", default="", help="a note the customer sees")
    ask.set_defaults(func=run_request_documents)

    files = actions.add_parser("documents", help="save the customer's uploads of an order into a folder")
    add_db_argument(files)
    files.add_argument("order", type=int)
    files.add_argument("--out", type=Path, required=True, help="folder to write the files into (created)")
    files.set_defaults(func=run_documents)

    issue = actions.add_parser("issue", help="issue the order: record the certificate from its .cer file")
    add_db_argument(issue)
    issue.add_argument("order", type=int)
    issue.add_argument("--cer", type=Path, required=True, help="the issued certificate (.cer, DER or PEM)")
    issue.set_defaults(func=run_issue)

    reject = actions.add_parser("reject", help="reject the order, saying why")
    add_db_argument(reject)
    reject.add_argument("order", type=int)
    reject.add_argument("--reason", required=True)
    reject.set_defaults(func=run_reject)


def _tenant_of(conn: sa.Connection, order_id: int) -> int:
    tenant = conn.execute(sa.select(kep_orders.c.tenant_id).where(kep_orders.c.id == order_id)).scalar_one_or_none()
    if tenant is None:
        raise NotFound(f"КЭП order {order_id} not found")
    return int(tenant)


def run_list(args: argparse.Namespace) -> int:
    def work(conn: sa.Connection) -> int:
        query = (
            sa.select(kep_orders, tenants.c.name.label("company"))
            .join(tenants, tenants.c.id == kep_orders.c.tenant_id)
            .order_by(kep_orders.c.id.desc())
        )
        if args.state:
            query = query.where(kep_orders.c.state == args.state)
        rows = conn.execute(query).all()
        uploads = {}
        for row in rows:
            uploads[row.id] = kep_documents.documents(conn, row.tenant_id, [row.id])[row.id]
        for row in rows:
            asked = ", ".join(row.requested_documents or []) or "-"
            sent = ", ".join(f"{d.kind}:{d.filename}" for d in uploads[row.id]) or "-"
            print(f"{row.id}\t{row.company}\t{row.state}\t{row.full_name} ({row.subject}, ИНН {row.inn})"
                  f"\trequested: {asked}\tuploaded: {sent}")
        if not rows:
            print("no КЭП orders")
        return 0

    return run_in_transaction(args, f"{PROG} list", work)


def run_request_documents(args: argparse.Namespace) -> int:
    def work(conn: sa.Connection) -> int:
        kep.advance(conn, Actor.cli(), _tenant_of(conn, args.order), args.order, kep.KepState.DOCUMENTS_REQUESTED,
                    at=datetime.now(UTC), note=args.note, documents=args.document)
        print(f"order {args.order}: documents requested ({', '.join(args.document)})")
        return 0

    return run_in_transaction(args, f"{PROG} request-documents", work)


def run_documents(args: argparse.Namespace) -> int:
    def work(conn: sa.Connection) -> int:
        _tenant_of(conn, args.order)
        uploads = kep_documents.contents(conn, args.order)
        for document_id, kind, filename, data in uploads:
            # The customer named the file: keep only its last part, never a path out of --out.
            target = args.out / f"{document_id}-{kind}-{Path(filename.replace(chr(92), '/')).name or 'document'}"
            try:
                args.out.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            except OSError as exc:
                raise InvalidInput(f"cannot write {target}: {exc.strerror}") from None
            print(f"{target}\t{len(data)} bytes")
        if not uploads:
            print(f"order {args.order}: no documents uploaded yet")
        return 0

    return run_in_transaction(args, f"{PROG} documents", work)


def run_issue(args: argparse.Namespace) -> int:
    try:
        data = args.cer.read_bytes()[: MAX_CERTIFICATE_BYTES + 1]
    except OSError as exc:
        raise SystemExit(f"{PROG} issue: cannot read {args.cer}: {exc.strerror}") from None

    def work(conn: sa.Connection) -> int:
        info = parse_certificate(data)
        tenant_id = _tenant_of(conn, args.order)
        order_inn = conn.execute(sa.select(kep_orders.c.inn).where(kep_orders.c.id == args.order)).scalar_one()
        if order_inn not in info.inns:
            raise InvalidInput(f"the certificate names ИНН {', '.join(sorted(info.inns)) or 'none'}, "
                               f"the order's applicant has ИНН {order_inn}")
        certificate = kep.IssuedCertificate(info.serial, info.owner_name, info.valid_until)
        kep.advance(conn, Actor.cli(), tenant_id, args.order, kep.KepState.ISSUED, at=datetime.now(UTC),
                    certificate=certificate)
        print(f"order {args.order}: issued, certificate {info.serial} ({info.owner_name}) "
              f"valid until {info.valid_until:%Y-%m-%d}")
        return 0

    return run_in_transaction(args, f"{PROG} issue", work)


def run_reject(args: argparse.Namespace) -> int:
    def work(conn: sa.Connection) -> int:
        kep.advance(conn, Actor.cli(), _tenant_of(conn, args.order), args.order, kep.KepState.REJECTED,
                    at=datetime.now(UTC), note=args.reason)
        print(f"order {args.order}: rejected")
        return 0

    return run_in_transaction(args, f"{PROG} reject", work)
