"""Small pieces of the pages: labels, countdown wording and colour markers, safe redirects, the
CSRF guard, filter query strings and tree nesting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.alerts import RuleId, Severity
from collector.security import PRINCIPAL_KEY, Principal
from collector.storage.rows import NodeRollup
from collector.storage.scope import Scope
from collector.web.i18n import labels
from collector.web.pages.data import filter_query, node_tree
from collector.web.pages.monitoring import safe_next
from collector.web.pages.render import block_marker, countdown_text, local_time, store_path
from collector.web.shared.csrf import SEED_COOKIE, CookieCsrf
from collector.web.shared.fleet_models import RegisterFilters
from collector.web.shared.zones import DEFAULT_TIME_ZONE


def test_every_rule_and_severity_has_a_russian_label() -> None:
    ru = labels("ru")
    for rule in RuleId:
        assert ru.rule(rule.value) != rule.value
    for severity in Severity:
        assert ru.severity(severity.label) == severity.title_ru
    assert ru.rule("brand_new_rule") == "brand_new_rule"  # an unknown key shows, never breaks a page
    assert ru.shift(None) == "неизвестно" and ru.severity(None) == "—"
    assert labels("en").rule("paper_out") == "Paper out"
    assert labels("de").language == "ru"


@pytest.mark.parametrize(
    ("seconds", "text", "marker"),
    [
        (None, "—", "none"),
        (10 * 86_400, "через 10 дн.", "yellow"),
        (30 * 86_400, "через 30 дн.", "yellow"),
        (30 * 86_400 + 3_600, "через 30 дн. 1 ч", "none"),
        (95, "через 1 мин", "yellow"),
        (0, "заблокирована", "red"),
        (-30, "заблокирована", "red"),
        (-(2 * 86_400 + 3 * 3_600), "заблокирована 2 дн. 3 ч назад", "red"),
    ],
)
def test_countdown_wording_and_kontur_markers(seconds: float | None, text: str, marker: str) -> None:
    assert countdown_text(seconds) == text
    assert block_marker(seconds) == marker


def test_instants_are_shown_in_the_tenant_zone() -> None:
    instant = datetime(2026, 11, 28, 9, 5, tzinfo=UTC)
    assert local_time(instant, DEFAULT_TIME_ZONE) == "28.11.2026 12:05"
    assert local_time(None, DEFAULT_TIME_ZONE) == "—"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/alerts?rule=paper_out", "/alerts?rule=paper_out"),
        ("//evil.example/x", "/alerts"),
        ("https://evil.example/", "/alerts"),
        ("/\\evil.example", "/alerts"),
        ("alerts", "/alerts"),
        ("", "/alerts"),
        (None, "/alerts"),
    ],
)
def test_redirects_stay_on_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target, "/alerts") == expected


class FakeRequest(dict):  # type: ignore[type-arg]
    """Enough of ``web.Request`` for the guard: item storage and cookies."""

    def __init__(self, cookies: dict[str, str], user: str) -> None:
        super().__init__({PRINCIPAL_KEY: Principal(user=user, scope=Scope.admin())})
        self.cookies = cookies


class FakeResponse:
    def __init__(self) -> None:
        self.cookies: dict[str, tuple[str, dict[str, Any]]] = {}

    def set_cookie(self, name: str, value: str, **options: Any) -> None:
        self.cookies[name] = (value, options)


def test_csrf_tokens_are_bound_to_the_browser_seed_and_the_user() -> None:
    guard = CookieCsrf(secret=b"k" * 32)
    first = FakeRequest({}, "оператор")
    token = guard.token(first)  # type: ignore[arg-type]
    response = FakeResponse()
    guard.bind(first, response)  # type: ignore[arg-type]
    seed, options = response.cookies[SEED_COOKIE]
    assert options["httponly"] and options["samesite"] == "Strict"

    same_browser = FakeRequest({SEED_COOKIE: seed}, "оператор")
    assert guard.verify(same_browser, token)  # type: ignore[arg-type]
    assert guard.token(same_browser) == token  # type: ignore[arg-type]
    assert not guard.verify(FakeRequest({SEED_COOKIE: seed}, "другой"), token)  # type: ignore[arg-type]
    assert not guard.verify(FakeRequest({}, "оператор"), token)  # type: ignore[arg-type]
    assert not guard.verify(same_browser, None)  # type: ignore[arg-type]
    assert not CookieCsrf(secret=b"x" * 32).verify(same_browser, token)  # type: ignore[arg-type]
    again = FakeResponse()
    guard.bind(same_browser, again)  # type: ignore[arg-type]
    assert again.cookies == {}  # an existing seed is not re-issued


@given(st.text(max_size=64))
def test_csrf_never_accepts_a_guess(guess: str) -> None:
    guard = CookieCsrf(secret=b"s" * 32)
    request = FakeRequest({SEED_COOKIE: "a" * 32}, "u")
    assert guard.verify(request, guess) == (guess == guard.token(request))  # type: ignore[arg-type]


def test_filter_query_leaves_defaults_out() -> None:
    assert filter_query(RegisterFilters()) == ""
    assert filter_query(RegisterFilters(rule="ofd_backlog", tag="24/7")) == "rule=ofd_backlog&tag=24%2F7"
    assert filter_query(RegisterFilters(sort="serial"), page=2) == "sort=serial&page=2"


def rollup(node_id: int, parent_id: int | None, path: str) -> NodeRollup:
    return NodeRollup(node_id, parent_id, "узел", f"n{node_id}", path, 0, {}, None)


def test_tree_nests_by_parent_and_lifts_nodes_whose_parent_is_hidden() -> None:
    roots = node_tree(
        [rollup(2, 1, "/1/2/"), rollup(3, 2, "/1/2/3/"), rollup(4, 2, "/1/2/4/"), rollup(6, 5, "/5/6/")]
    )
    assert [root.rollup.node_id for root in roots] == [2, 6]
    assert [child.rollup.node_id for child in roots[0].children] == [3, 4]
    assert roots[0].children[0].depth == 1


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (["ООО «Ромашка»", "Продукты у дома", "Москва", "Магазин №1"], "Продукты у дома / Москва / Магазин №1"),
        (["ООО «Ромашка»", "Новые кассы"], "Новые кассы"),
        (["ООО «Ромашка»"], "ООО «Ромашка»"),  # a register placed on the company itself
    ],
)
def test_lists_name_the_store_without_the_company_every_row_shares(path: list[str], shown: str) -> None:
    assert store_path(path) == shown
