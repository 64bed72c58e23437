"""The JSON API under ``/api/v1``: one module per resource, each holding its handlers, its request
and response models and its ``OPERATIONS`` table; ``openapi`` builds the document from the tables.

* ``registers`` (list, CSV export, one register, history, events) — ``registers_csv`` writes the CSV;
* ``alerts`` (list, one alert, acknowledge, comment, silence);
* ``tree`` (node tree and rollups, nodes, levels, tree CSV import, tags);
* ``users`` (sign-up, login/logout, password reset, invitations accepted, the caller, API tokens);
* ``groups`` (groups, members, grants, invitations, "why does X see Y");
* ``company`` (settings), ``contracts`` (OFD contracts), ``kep`` (КЭП orders, validity, company
  alerts), ``actions`` (what needs a КЭП: ФНС application, OFD document), ``audit`` (the log);
* ``register_actions`` (remote actions on a register through its agent, bulk shift closing);
* ``notifications`` (receivers, test message, failed deliveries);
* ``agents`` (agent events; enrollment tokens and revocation, when the app has enrollment);
* ``ops`` (health, readiness, metrics, dead letters, the OpenAPI document).

What the API shares with the pages (the fleet's read models, account plumbing) is in
``collector.web.shared``; the API never imports ``collector.web.pages``.
"""

from __future__ import annotations

from aiohttp import web

from collector.enrollment.service import EnrollmentService
from collector.web.api import (
    actions,
    agents,
    alerts,
    audit,
    company,
    contracts,
    groups,
    kep,
    notifications,
    ops,
    register_actions,
    registers,
    tree,
    users,
)
from collector.web.routing import Operation, add_operations

OPERATIONS: tuple[Operation, ...] = (
    *registers.OPERATIONS,
    *agents.OPERATIONS,
    *alerts.OPERATIONS,
    *tree.OPERATIONS,
    *ops.OPERATIONS,
    *users.OPERATIONS,
    *company.OPERATIONS,
    *audit.OPERATIONS,
    *groups.OPERATIONS,
    *contracts.OPERATIONS,
    *kep.OPERATIONS,
    *actions.OPERATIONS,
    *register_actions.OPERATIONS,
    *notifications.OPERATIONS,
)


def add_api_routes(app: web.Application, enrollment: EnrollmentService | None = None) -> None:
    """Route and document every operation; the enrollment ones only with an enrollment service."""
    add_operations(app, OPERATIONS)
    if enrollment is not None:
        agents.add_enrollment_operations(app, enrollment)
