"""Pydantic models of the accounts endpoints (bodies, query strings and answers), so they appear
in the OpenAPI document and oversized or unknown fields are refused before any work is done."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from collector.accounts.rights import Permission, Role

Email = Field(min_length=3, max_length=254)
Password = Field(min_length=1, max_length=256)
Secret = Field(min_length=10, max_length=200)
Name = Field(min_length=1, max_length=200)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- authentication ------------------------------------------------------------------------------


class KepOrderBody(_In):
    subject: Literal["head", "employee"] = "head"
    full_name: str = Name
    position: str = Name
    inn: str = Field(min_length=10, max_length=12, description="the person's ИНН (12 digits)")
    snils: str | None = Field(None, max_length=14)
    email: str = Email
    phone: str = Field("", max_length=30)


class SignUpBody(_In):
    email: str = Email
    password: str = Password
    company: str = Name
    inn: str = Field(min_length=10, max_length=12, description="the company's ИНН (10 or 12 digits)")
    kep_order: KepOrderBody | None = Field(None, description="order a КЭП right away (optional)")


class SignUpOut(BaseModel):
    tenant_id: int
    user_id: int
    root_node_id: int
    kep_order_id: int | None
    message: str


class TokenBody(_In):
    token: str = Secret


class ConfirmOut(BaseModel):
    user_id: int
    confirmed: bool


class LoginBody(_In):
    email: str = Email
    password: str = Password


class LoginOut(BaseModel):
    user_id: int
    email: str
    csrf_token: str = Field(description="send it as X-CSRF-Token with every POST/PUT/PATCH/DELETE")
    expires_at: AwareDatetime


class Done(BaseModel):
    ok: bool
    message: str


class ResetRequestBody(_In):
    email: str = Email


class ResetConfirmBody(_In):
    token: str = Secret
    password: str = Password


# --- me, tokens ----------------------------------------------------------------------------------


class GrantOut(BaseModel):
    grant_id: int
    group_id: int
    group_name: str
    role: Role
    node_id: int
    node_name: str


def grant_out(grant: object) -> GrantOut:
    """A ``rights.GrantInfo`` (or a mapping with its fields) as the API shows it."""
    return GrantOut.model_validate(grant, from_attributes=True)


class TenantOut(BaseModel):
    id: int
    name: str
    inn: str | None
    root_node_id: int | None
    time_zone: str = Field(description="IANA zone the pages show instants in, e.g. Europe/Moscow")
    alert_thresholds: dict[str, Any] = Field(
        default_factory=dict, description="the company's overrides of the alert thresholds (empty: the defaults)"
    )


class CompanyPatch(_In):
    time_zone: str | None = Field(
        None, min_length=1, max_length=64, description="an IANA zone name, e.g. Asia/Vladivostok"
    )
    alert_thresholds: dict[str, Any] | None = Field(
        None,
        description="replaces the overrides: names of the thresholds (e.g. ofd_backlog_warning), durations as "
        "seconds or ISO 8601 (\"PT2H\"); {} restores the defaults",
    )


class MeOut(BaseModel):
    user_id: int
    email: str
    full_name: str
    tenant: TenantOut
    company_permissions: list[Permission] = Field(description="what holds on the whole company tree")
    grants: list[GrantOut]


class ApiTokenBody(_In):
    name: str = Field(min_length=1, max_length=100)
    expires_at: AwareDatetime | None = None


class ApiTokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: AwareDatetime
    expires_at: AwareDatetime | None
    last_used_at: AwareDatetime | None


class ApiTokenList(BaseModel):
    items: list[ApiTokenOut]


class NewApiTokenOut(BaseModel):
    id: int
    prefix: str
    token: str = Field(description="shown once; only its hash is kept")


# --- tree, levels, tags --------------------------------------------------------------------------


class NodeOut(BaseModel):
    id: int
    parent_id: int | None
    kind: str
    name: str


class LevelOut(BaseModel):
    position: int
    name: str
    holds_registers: bool


class TreeOut(BaseModel):
    levels: list[LevelOut]
    nodes: list[NodeOut]


class NodeBody(_In):
    parent_id: int = Field(ge=1)
    kind: str = Field(min_length=1, max_length=50)
    name: str = Name


class NodePatch(_In):
    name: str | None = Field(None, min_length=1, max_length=200)
    parent_id: int | None = Field(None, ge=1, description="move the subtree under this node")


class Created(BaseModel):
    id: int


class LevelsBody(_In):
    names: list[str] = Field(min_length=2, max_length=20)


class LevelList(BaseModel):
    items: list[LevelOut]


class TagBody(_In):
    name: str = Field(min_length=1, max_length=100)


class TagOut(BaseModel):
    id: int
    name: str


class TagList(BaseModel):
    items: list[TagOut]


class ImportQuery(_In):
    dry_run: bool = Field(False, description="check every line and report, change nothing")


class LineErrorOut(BaseModel):
    line: int
    message: str


class ImportReportOut(BaseModel):
    ok: bool
    applied: bool
    errors: list[LineErrorOut]
    changes: list[str]


# --- groups, grants, invitations -----------------------------------------------------------------


class MemberOut(BaseModel):
    user_id: int
    email: str


class GroupOut(BaseModel):
    id: int
    name: str
    members: list[MemberOut]
    grants: list[GrantOut]


class GroupList(BaseModel):
    items: list[GroupOut]


class GroupBody(_In):
    name: str = Field(min_length=1, max_length=100)


class MemberBody(_In):
    user_id: int = Field(ge=1)


class GrantBody(_In):
    group_id: int = Field(ge=1)
    role: Role
    node_id: int = Field(ge=1)


class InvitationBody(_In):
    group_id: int = Field(ge=1)
    email: str = Email


class AcceptBody(_In):
    token: str = Secret
    password: str | None = Field(None, max_length=256, description="needed when the address has no account yet")
    full_name: str = Field("", max_length=200)


class WhyQuery(_In):
    user: int | None = Field(None, ge=1, description="whose view to explain (default: yours)")


class WhyOut(BaseModel):
    register_id: str
    user_id: int
    visible: bool
    message: str
    grants: list[GrantOut]


# --- contracts, КЭП, audit -----------------------------------------------------------------------


class ContractBody(_In):
    activated: bool
    paid_until: date | None = None
    tariff: str | None = Field(None, max_length=200)


class ContractOut(BaseModel):
    register_id: str
    activated: bool | None
    paid_until: date | None
    tariff: str | None
    updated_at: AwareDatetime | None


class KepOrderOut(BaseModel):
    id: int
    subject: str
    full_name: str
    state: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    reject_reason: str | None


class KepOrderList(BaseModel):
    items: list[KepOrderOut]


class CertificateBody(_In):
    serial: str = Field(min_length=1, max_length=100)
    owner_name: str = Name
    valid_until: AwareDatetime


class TransitionBody(_In):
    to: Literal["documents_requested", "documents_received", "issued", "rejected"]
    note: str = Field("", max_length=2000)
    certificate: CertificateBody | None = None


class KepOut(BaseModel):
    valid: bool
    message: str
    serial: str | None
    valid_until: AwareDatetime | None


class CompanyAlertOut(BaseModel):
    """A company-level alert (today: the КЭП running out); the same lifecycle as register alerts."""

    id: int
    rule: str
    occurrence: int
    severity: str
    status: Literal["active", "cleared"]
    acknowledged: bool
    acked_by: str | None
    acked_at: AwareDatetime | None
    started_at: AwareDatetime
    updated_at: AwareDatetime
    cleared_at: AwareDatetime | None
    message: str
    fix: str | None = Field(description="what to do, in Russian")
    details: dict[str, Any]


class CompanyAlertList(BaseModel):
    items: list[CompanyAlertOut]


class FnsApplicationBody(_In):
    kind: Literal["registration_change", "fn_replacement", "deregistration"]
    note: str = Field("", max_length=2000)


class OfdDocumentBody(_In):
    kind: Literal["contract", "connection", "act"] = Field(
        description="contract (договор), connection (заявление на подключение ККТ), act (акт оказанных услуг)"
    )
    register_id: str | None = Field(None, min_length=1, max_length=100, description="the register it concerns, if one")
    note: str = Field("", max_length=2000)


class OfdDocumentOut(BaseModel):
    kind: str
    register_id: str | None
    recorded: bool
    message: str


class FnsApplicationOut(BaseModel):
    register_id: str
    kind: str
    recorded: bool
    message: str


class AuditQuery(_In):
    target_type: str | None = Field(None, min_length=1, max_length=30)
    target_id: str | None = Field(None, min_length=1, max_length=100)
    limit: int = Field(100, ge=1, le=1000)


class AuditEntryOut(BaseModel):
    id: int
    at: AwareDatetime
    actor: str
    action: str
    target_type: str
    target_id: str
    details: dict[str, object]


class AuditList(BaseModel):
    items: list[AuditEntryOut]
