"""NotificationGrouper: per-store grouping, timers, silences, quiet hours, rights — on a fake clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.notify.grouping import GroupTimings, NotificationGrouper
from collector.notify.notice import (
    AlertNotice,
    NotificationGroup,
    NotifyConfigError,
    QuietHours,
    Receiver,
)

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # 12:00 in Moscow
SEC = timedelta(seconds=1)
MIN = timedelta(minutes=1)

OPS = Receiver("ops", "t1", "email", "ops@example.ru")
HOOK = Receiver("hook", "t1", "webhook", "http://127.0.0.1/hook", secret="s")
OTHER_TENANT = Receiver("foreign", "t2", "email", "x@example.ru")


def notice(
    register: str, store: str = "s1", rule: str = "ofd_backlog", severity: str = "warning", **kw: object
) -> AlertNotice:
    fields: dict[str, object] = {
        "tenant_id": "t1",
        "store_node_id": store,
        "store_name": f"Магазин {store}",
        "register_id": register,
        "register_serial": f"SN-{register}",
        "rule": rule,
        "severity": severity,
        "status": "firing",
        "message": f"{rule} on {register}",
    }
    fields.update(kw)
    return AlertNotice(**fields)  # type: ignore[arg-type]


def resolved(n: AlertNotice) -> AlertNotice:
    return replace(n, status="resolved")


def make(receivers: list[Receiver] | None = None, **kw: object) -> NotificationGrouper:
    pool = [OPS] if receivers is None else receivers
    kw.setdefault("can_see", lambda r, n: True)
    return NotificationGrouper(lambda tenant: pool, **kw)  # type: ignore[arg-type]


def keys(group: NotificationGroup) -> set[str]:
    return {n.register_id for n in (*group.firing, *group.resolved)}


def test_burst_from_one_store_becomes_one_message_per_receiver_after_group_wait() -> None:
    g = make([OPS, HOOK])
    for i in range(10):
        g.add(notice(f"r{i}"), T0 + i * SEC)
    assert g.flush(T0 + 29 * SEC) == []
    out = g.flush(T0 + 30 * SEC)
    assert sorted(m.receiver.receiver_id for m in out) == ["hook", "ops"]
    for m in out:
        assert m.reason == "first"
        assert len(m.firing) == 10 and m.resolved == ()
        assert m.register_count == 10
        assert len(m.new) == 10
    assert g.flush(T0 + 31 * SEC) == []


def test_each_store_gets_its_own_group() -> None:
    g = make()
    g.add(notice("a", store="s1"), T0)
    g.add(notice("b", store="s2"), T0)
    out = g.flush(T0 + 30 * SEC)
    assert sorted(m.store_name for m in out) == ["Магазин s1", "Магазин s2"]
    assert all(len(m.firing) == 1 for m in out)


def test_changes_wait_for_group_interval_and_carry_the_whole_group() -> None:
    g = make()
    g.add(notice("a"), T0)
    assert [m.reason for m in g.flush(T0 + 30 * SEC)] == ["first"]
    g.add(notice("b"), T0 + MIN)
    assert g.flush(T0 + 30 * SEC + 4 * MIN) == []
    (update,) = g.flush(T0 + 30 * SEC + 5 * MIN)
    assert update.reason == "update"
    assert keys(update) == {"a", "b"}
    assert update.new == {("b", "ofd_backlog")}


def test_unchanged_firing_group_repeats_after_repeat_interval_only() -> None:
    g = make()
    g.add(notice("a"), T0)
    g.flush(T0 + 30 * SEC)
    g.add(notice("a", message="new countdown text"), T0 + 10 * MIN)  # same severity: not a change
    assert g.flush(T0 + 30 * SEC + 4 * timedelta(hours=1) - SEC) == []
    (repeat,) = g.flush(T0 + 30 * SEC + timedelta(hours=4))
    assert repeat.reason == "repeat" and repeat.new == frozenset()
    assert repeat.firing[0].message == "new countdown text"


def test_severity_change_is_an_update() -> None:
    g = make()
    g.add(notice("a"), T0)
    g.flush(T0 + 30 * SEC)
    g.add(notice("a", severity="critical"), T0 + MIN)
    (update,) = g.flush(T0 + 30 * SEC + 5 * MIN)
    assert update.reason == "update" and update.highest_severity == "critical"


def test_resolved_is_sent_once_then_the_group_is_forgotten() -> None:
    g = make()
    a = notice("a")
    g.add(a, T0)
    g.add(notice("b"), T0)
    g.flush(T0 + 30 * SEC)
    g.add(resolved(a), T0 + MIN)
    (update,) = g.flush(T0 + 6 * MIN)
    assert [n.register_id for n in update.resolved] == ["a"]
    assert [n.register_id for n in update.firing] == ["b"]
    g.add(resolved(notice("b")), T0 + 7 * MIN)
    (last,) = g.flush(T0 + 12 * MIN)
    assert last.firing == () and [n.register_id for n in last.resolved] == ["b"]
    assert g.pending_groups == 0
    assert g.flush(T0 + timedelta(hours=5)) == []
    # A new problem later opens a fresh group with its own group_wait.
    g.add(notice("c"), T0 + timedelta(hours=6))
    assert g.flush(T0 + timedelta(hours=6) + 29 * SEC) == []
    assert [m.reason for m in g.flush(T0 + timedelta(hours=6) + 30 * SEC)] == ["first"]


def test_alert_that_fires_and_clears_inside_group_wait_is_never_sent() -> None:
    g = make()
    a = notice("a")
    g.add(a, T0)
    g.add(resolved(a), T0 + 10 * SEC)
    assert g.pending_groups == 0
    assert g.flush(T0 + MIN) == []
    g.add(resolved(notice("never-seen")), T0 + MIN)
    assert g.pending_groups == 0


def test_flap_back_to_the_reported_state_sends_nothing() -> None:
    g = make()
    a = notice("a")
    g.add(a, T0)
    g.flush(T0 + 30 * SEC)
    g.add(resolved(a), T0 + MIN)
    g.add(a, T0 + 2 * MIN)
    assert g.flush(T0 + 10 * MIN) == []


def test_silenced_register_is_held_and_reported_when_the_silence_ends() -> None:
    until = T0 + timedelta(hours=1)
    g = make(is_silenced=lambda n, now: n.register_id == "maint" and now < until)
    g.add(notice("maint"), T0)
    g.add(notice("ok"), T0)
    (first,) = g.flush(T0 + 30 * SEC)
    assert keys(first) == {"ok"}
    assert g.flush(T0 + 30 * MIN) == []
    (after,) = g.flush(until)
    assert keys(after) == {"maint", "ok"} and after.new == {("maint", "ofd_backlog")}


def test_silenced_resolution_is_dropped() -> None:
    silenced = {"on": False}
    g = make(is_silenced=lambda n, now: silenced["on"])
    a = notice("a")
    g.add(a, T0)
    g.flush(T0 + 30 * SEC)
    silenced["on"] = True
    g.add(resolved(a), T0 + MIN)
    assert g.flush(T0 + 10 * MIN) == []
    silenced["on"] = False
    assert g.flush(T0 + 20 * MIN) == []
    assert g.pending_groups == 0


def test_quiet_hours_hold_minor_alerts_but_critical_still_pages() -> None:
    night = Receiver(
        "night", "t1", "email", "n@example.ru", quiet_hours=QuietHours(time(22), time(8), floor="critical")
    )
    g = make([night])
    at_23_msk = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    g.add(notice("w", severity="warning"), at_23_msk)
    g.add(notice("c", rule="fn_validity", severity="critical"), at_23_msk)
    g.add(notice("b", rule="shift", severity="blocked"), at_23_msk)
    (page,) = g.flush(at_23_msk + 30 * SEC)
    assert keys(page) == {"c", "b"}
    assert page.firing[0].severity == "blocked"  # most severe first
    assert g.flush(datetime(2026, 11, 27, 23, 0, tzinfo=UTC)) == []  # 02:00 MSK: warning still held
    (repeat,) = g.flush(datetime(2026, 11, 28, 0, 1, tzinfo=UTC))  # critical ones repeat even at night
    assert repeat.reason == "repeat" and keys(repeat) == {"c", "b"}
    assert g.flush(datetime(2026, 11, 28, 4, 0, tzinfo=UTC)) == []  # 07:00 MSK, before the next repeat
    (morning,) = g.flush(datetime(2026, 11, 28, 5, 0, tzinfo=UTC))  # 08:00 MSK
    assert morning.reason == "update" and morning.new == {("w", "ofd_backlog")}


def test_receiver_only_hears_about_registers_inside_its_grants() -> None:
    boss = Receiver("boss", "t1", "email", "b@example.ru", principal_id="u-boss")
    manager = Receiver("mgr", "t1", "email", "m@example.ru", principal_id="u-mgr")
    grants = {"u-boss": {"s1", "s2"}, "u-mgr": {"s2"}}
    g = make([boss, manager], can_see=lambda r, n: n.store_node_id in grants[r.principal_id or ""])
    g.add(notice("a", store="s1"), T0)
    g.add(notice("b", store="s2"), T0)
    out = g.flush(T0 + 30 * SEC)
    seen = sorted((m.receiver.receiver_id, m.key.store_node_id) for m in out)
    assert seen == [("boss", "s1"), ("boss", "s2"), ("mgr", "s2")]


def test_revoked_grant_stops_pending_notifications() -> None:
    allowed = {"on": True}
    g = make(can_see=lambda r, n: allowed["on"])
    g.add(notice("a"), T0)
    allowed["on"] = False
    assert g.flush(T0 + MIN) == []
    assert g.pending_groups == 0


def test_receiver_of_another_tenant_is_never_notified_even_if_the_hook_says_yes() -> None:
    g = make([OTHER_TENANT, OPS])
    g.add(notice("a"), T0)
    assert [m.receiver.receiver_id for m in g.flush(T0 + MIN)] == ["ops"]


def test_removed_receiver_gets_nothing_and_an_edited_one_applies_at_once() -> None:
    pool = [OPS, HOOK]
    g = NotificationGrouper(lambda tenant: pool, can_see=lambda r, n: True)
    g.add(notice("a", severity="warning"), T0)
    sleepy = replace(OPS, quiet_hours=QuietHours(time(0), time(23, 59), floor="major"))
    pool[:] = [sleepy]  # hook unsubscribed, ops set quiet hours while the alert waited
    assert g.flush(T0 + MIN) == []
    assert g.pending_groups == 1  # ops' warning is held, the hook's group is gone


def test_quiet_hours_window_edges() -> None:
    wrap = QuietHours(time(22), time(8))
    assert wrap.contains(time(23)) and wrap.contains(time(0)) and wrap.contains(time(7, 59))
    assert not wrap.contains(time(8)) and not wrap.contains(time(21, 59))
    day = QuietHours(time(13), time(14))
    assert day.contains(time(13, 30)) and not day.contains(time(14))
    assert not QuietHours(time(9), time(9)).contains(time(9))


def test_bad_input_is_a_typed_error() -> None:
    with pytest.raises(NotifyConfigError):
        notice("a", severity="disaster")
    with pytest.raises(NotifyConfigError):
        notice("a", status="open")
    with pytest.raises(NotifyConfigError):
        notice("a", blocks_at=datetime(2026, 12, 1))  # naive
    with pytest.raises(NotifyConfigError):
        Receiver("r", "t1", "webhook", "http://x/")  # no secret
    with pytest.raises(NotifyConfigError):
        Receiver("r", "t1", "webhook", "ftp://x/", secret="s")
    with pytest.raises(NotifyConfigError):
        Receiver("r", "t1", "email", "a@b\r\nBcc: c@d")
    with pytest.raises(NotifyConfigError):
        Receiver("r", "t1", "email", "a@b, c@d")
    with pytest.raises(NotifyConfigError):
        Receiver("r", "t1", "email", "a@b", timezone="Mars/Olympus")
    with pytest.raises(NotifyConfigError):
        QuietHours(time(1), time(2), floor="loud")
    with pytest.raises(NotifyConfigError):
        GroupTimings(group_wait=-SEC)


_step = st.tuples(
    st.integers(0, 600),  # seconds to advance
    st.sampled_from(["r1", "r2", "r3", "r4"]),
    st.sampled_from(["s1", "s2"]),
    st.sampled_from(["warning", "major", "critical"]),
    st.booleans(),  # resolved?
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_step, max_size=40))
def test_grouper_invariants_hold_for_any_notice_stream(steps: list[tuple[int, str, str, str, bool]]) -> None:
    timings = GroupTimings()
    hidden = {"r4"}  # OPS may not see r4
    g = make([OPS, OTHER_TENANT], can_see=lambda r, n: n.register_id not in hidden, timings=timings)
    now = T0
    last_sent: dict[str, datetime] = {}
    reported_firing: set[tuple[str, str]] = set()
    for advance, register, store, severity, is_resolved in steps:
        now += timedelta(seconds=advance)
        n = notice(register, store=store, severity=severity, store_name=f"Магазин {store}")
        g.add(resolved(n) if is_resolved else n, now)
        for m in g.flush(now):
            key = str(m.key)
            assert m.receiver is OPS
            assert all(x.register_id not in hidden for x in (*m.firing, *m.resolved))
            assert all(x.store_node_id == m.key.store_node_id for x in (*m.firing, *m.resolved))
            if key in last_sent and m.reason == "update":
                assert now - last_sent[key] >= timings.group_interval
            last_sent[key] = now
            for x in m.resolved:
                assert (x.store_node_id, x.register_id) in reported_firing
                reported_firing.discard((x.store_node_id, x.register_id))
            reported_firing.update((x.store_node_id, x.register_id) for x in m.firing)
