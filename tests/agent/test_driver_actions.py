"""Remote actions through the real drivers against the simulated register over ``sim://``, on every
protocol: what each action does to the register, and the typed outcome when it cannot."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from agent.drivers.actions import WRONG_PASSWORD_HINT, OutcomeKind
from agent.drivers.registry import DeviceConnection
from firmware_sim.action_faults import SimAction
from firmware_sim.clock import ManualClock
from firmware_sim.devices import make_device
from firmware_sim.hosts import install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.model import RegisterModel
from protocol.kkt.atol import errors as atol_errors
from protocol.kkt.shtrih import errors as shtrih_errors
from protocol.kkt.state import ShiftStatus
from protocol.mqtt.actions import ActionName

PROTOCOLS = ("shtrih", "shtrih-alt", "atol", "atol2")
START = datetime(2026, 3, 2, 9, 0, 0)


class Rig:
    def __init__(self, protocol: str) -> None:
        install_sim_url_handler()
        self.protocol = protocol
        self.clock = ManualClock(START)
        self.model = RegisterModel(clock=self.clock)
        self.device = make_device(protocol, self.model)
        self.name = f"act-{uuid.uuid4().hex[:8]}"
        register_sim(self.name, self.device)
        self.connection = DeviceConnection(protocol, f"sim://{self.name}", timeout=0.2, retries=1)

    def close(self) -> None:
        self.connection.close()
        unregister_sim(self.name)


@pytest.fixture(params=PROTOCOLS)
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    rig = Rig(request.param)
    yield rig
    rig.close()


def test_close_shift_makes_the_shift_close_document_and_the_poll_sees_it(rig: Rig) -> None:
    rig.model.open_shift()
    rig.model.sell()
    before = rig.model.last_fd_number

    outcome = rig.connection.perform(ActionName.CLOSE_SHIFT, START)

    assert outcome.kind is OutcomeKind.DONE
    assert not rig.model.shift_open and rig.model.receipts_in_shift == 0
    assert rig.model.last_fd_number == before + 1
    assert rig.model.ofd_queue[-1].number == before + 1  # unsent to the OFD like any FD
    state = rig.connection.poll()
    assert state.shift.status is ShiftStatus.CLOSED and state.last_fd_number == before + 1


def test_open_shift_then_open_again_is_a_wrong_shift_state(rig: Rig) -> None:
    assert rig.connection.perform(ActionName.OPEN_SHIFT, START).kind is OutcomeKind.DONE
    assert rig.model.shift_open and rig.model.shift_number == 1

    again = rig.connection.perform(ActionName.OPEN_SHIFT, START)

    assert again.kind is OutcomeKind.WRONG_SHIFT_STATE
    assert again.code is not None and again.meaning
    assert rig.model.shift_number == 1


def test_x_report_changes_no_fiscal_state(rig: Rig) -> None:
    rig.model.open_shift()
    fd, shift = rig.model.last_fd_number, rig.model.shift_number

    outcome = rig.connection.perform(ActionName.X_REPORT, START)

    assert outcome.kind is OutcomeKind.DONE
    assert rig.model.x_reports == 1
    assert (rig.model.last_fd_number, rig.model.shift_number, rig.model.shift_open) == (fd, shift, True)


def test_set_datetime_with_the_shift_closed_moves_the_register_clock(rig: Rig) -> None:
    wanted = START + timedelta(days=1, hours=3, minutes=7, seconds=5)

    outcome = rig.connection.perform(ActionName.SET_DATETIME, wanted)

    assert outcome.kind is OutcomeKind.DONE
    assert rig.model.now() == wanted
    assert rig.connection.poll().register_clock == wanted


def test_set_datetime_with_the_shift_open_is_refused_with_the_register_code(rig: Rig) -> None:
    rig.model.open_shift()

    outcome = rig.connection.perform(ActionName.SET_DATETIME, START + timedelta(hours=5))

    assert outcome.kind is OutcomeKind.WRONG_SHIFT_STATE
    expected = atol_errors.SHIFT_OPEN if rig.protocol.startswith("atol") else shtrih_errors.NOT_IN_THIS_MODE
    assert outcome.code == expected
    assert rig.model.now() == START


def test_a_scripted_register_error_fails_the_action_with_its_meaning(rig: Rig) -> None:
    rig.model.open_shift()
    atol = rig.protocol.startswith("atol")
    code = atol_errors.NO_PAPER if atol else shtrih_errors.NO_RECEIPT_PAPER
    rig.device.action_faults.refuse_next(SimAction.Z_REPORT, code)

    outcome = rig.connection.perform(ActionName.CLOSE_SHIFT, START)

    assert (outcome.kind, outcome.code) == (OutcomeKind.REGISTER_ERROR, code)
    assert outcome.meaning == (atol_errors.error_meaning(code) if atol else shtrih_errors.error_meaning(0x41, code))
    assert rig.model.shift_open


def _store_passwords(rig: Rig) -> None:
    """The store changed the register's passwords from the factory ones."""
    if rig.protocol.startswith("atol"):
        rig.device.access_password, rig.device.mode_password = 42, 2929
    else:
        rig.device.admin_password, rig.device.sysadmin_password = 2929, 3030


def _configured(rig: Rig, action_password: int) -> DeviceConnection:
    """The agent's connection as ``[[devices]]`` with the passwords set would open it."""
    rig.connection.close()
    access = 42 if rig.protocol.startswith("atol") else 3030  # Shtrih: the system administrator's
    return DeviceConnection(
        rig.protocol, f"sim://{rig.name}", timeout=0.2, retries=1, access_password=access, action_password=action_password
    )


def test_actions_run_with_the_configured_password_of_a_register_with_non_default_ones(rig: Rig) -> None:
    _store_passwords(rig)
    rig.model.open_shift()
    connection = _configured(rig, 2929)
    try:
        outcome = connection.perform(ActionName.CLOSE_SHIFT, START)
        assert outcome.kind is OutcomeKind.DONE
        assert not rig.model.shift_open
    finally:
        connection.close()


def test_a_wrong_action_password_fails_with_the_registers_code_and_where_to_set_it(rig: Rig) -> None:
    _store_passwords(rig)
    rig.model.open_shift()
    connection = _configured(rig, 1234)
    try:
        outcome = connection.perform(ActionName.CLOSE_SHIFT, START)
    finally:
        connection.close()

    atol = rig.protocol.startswith("atol")
    code = atol_errors.WRONG_PASSWORD if atol else shtrih_errors.WRONG_PASSWORD
    assert (outcome.kind, outcome.code) == (OutcomeKind.REGISTER_ERROR, code)
    meaning = atol_errors.error_meaning(code) if atol else shtrih_errors.error_meaning(0x41, code)
    assert outcome.meaning == meaning + WRONG_PASSWORD_HINT  # the register's own words, then where to fix it
    assert rig.model.shift_open  # nothing happened


def test_a_link_dropped_mid_action_is_link_lost_and_the_register_comes_back(rig: Rig) -> None:
    rig.model.open_shift()
    before = rig.model.last_fd_number
    rig.device.action_faults.drop_link_during(SimAction.Z_REPORT, seconds=1.0, execute=True)

    outcome = rig.connection.perform(ActionName.CLOSE_SHIFT, START)

    if rig.protocol == "shtrih-alt":
        # The alternative link numbers its frames: the repeat after the pause is answered from the
        # register's cache (specs §1.3), so the answer is recovered and the report not made twice.
        assert outcome.kind is OutcomeKind.DONE
    else:
        assert outcome.kind is OutcomeKind.LINK_LOST
    assert not rig.model.shift_open  # it did close; only the answer was lost
    assert rig.model.last_fd_number == before + 1
    deadline = datetime.now() + timedelta(seconds=10)
    while True:  # the next polls fail until the outage ends, then show the closed shift
        try:
            state = rig.connection.poll()
            break
        except Exception:
            assert datetime.now() < deadline, "the register never came back"
    assert state.shift.status is ShiftStatus.CLOSED


def test_reboot_on_atol_answers_then_drops_off_briefly_and_shtrih_has_none(rig: Rig) -> None:
    outcome = rig.connection.perform(ActionName.REBOOT, START)

    if rig.protocol.startswith("shtrih"):
        assert outcome.kind is OutcomeKind.UNSUPPORTED and outcome.meaning
        return
    assert outcome.kind is OutcomeKind.DONE
    assert rig.device.reboots == 1
    time.sleep(0.3)
    assert rig.device.outage.active
