"""The simulator carries the remote actions out honestly: what each does to the register's fiscal
state, the refusals a real register gives, and the scripted faults (refusal, link drop, reboot)."""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta

import pytest

from agent.drivers.atol import AtolSession
from agent.drivers.errors import DeviceRefused, NoAnswer
from agent.drivers.transport import open_link
from firmware_sim.action_faults import ActionFaults, LinkOutage, SimAction
from firmware_sim.atol import AtolDevice
from firmware_sim.clock import ManualClock
from firmware_sim.hosts import install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.model import ReceiptState, RegisterModel
from firmware_sim.shtrih import ShtrihDevice
from protocol.kkt.atol import errors as atol_errors
from protocol.kkt.atol.messages import EnterMode, GetDeviceStatus, SetDateTime
from protocol.kkt.fn import FnDocumentType
from protocol.kkt.shtrih import errors as err
from protocol.kkt.shtrih import messages as msg

START = datetime(2026, 3, 2, 9, 0, 0)


def _model() -> RegisterModel:
    return RegisterModel(clock=ManualClock(START))


# ---------------------------------------------------------------------------- the model


def test_z_report_closes_the_shift_with_a_document_waiting_for_the_ofd() -> None:
    model = _model()
    model.open_shift()
    model.sell()
    model.close_shift()
    assert not model.shift_open and model.receipts_in_shift == 0 and model.shift_number == 1
    closing = model.ofd_queue[-1]
    assert model.last_fd_number == 3  # shift open, receipt, shift close
    assert (closing.type, closing.number) == (FnDocumentType.SHIFT_CLOSE, 3)


def test_x_report_changes_nothing_fiscal_and_not_inside_a_receipt() -> None:
    model = _model()
    model.open_shift()
    before = (model.last_fd_number, len(model.ofd_queue), model.shift_open)
    model.x_report()
    assert (model.last_fd_number, len(model.ofd_queue), model.shift_open) == before and model.x_reports == 1
    model.open_receipt()
    with pytest.raises(ReceiptState):
        model.x_report()


def test_the_clock_is_set_only_with_the_shift_closed_and_then_runs_on() -> None:
    model = _model()
    model.set_clock(datetime(2026, 5, 1, 12, 0, 0))
    model.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    assert model.now() == datetime(2026, 5, 1, 12, 1, 0)
    model.open_shift()
    with pytest.raises(ReceiptState):
        model.set_clock(START)


# ---------------------------------------------------------------------------- Shtrih, command by command


def _run(device: ShtrihDevice, command: msg.Command[object, object], request: object) -> object:
    return command.decode_answer(device.execute(command.encode_request(request)))


def _refusal(answer: object) -> int | None:
    return answer.code if isinstance(answer, msg.ErrorAnswer) else None


def test_shtrih_date_needs_its_confirmation_and_only_the_same_date() -> None:
    device = ShtrihDevice(_model())
    _run(device, msg.SET_DATE, msg.SetDateRequest(date(2026, 6, 1)))
    assert device.model.now() == START  # proposed, not applied
    assert _refusal(_run(device, msg.CONFIRM_DATE, msg.SetDateRequest(date(2026, 6, 2)))) == err.WRONG_PARAMETERS
    _run(device, msg.SET_DATE, msg.SetDateRequest(date(2026, 6, 1)))
    assert _refusal(_run(device, msg.CONFIRM_DATE, msg.SetDateRequest(date(2026, 6, 1)))) is None
    assert device.model.now() == datetime(2026, 6, 1, 9, 0, 0)


def test_shtrih_refusals_a_real_register_gives() -> None:
    device = ShtrihDevice(_model())
    cashier = msg.PasswordRequest(msg.CASHIER_PASSWORD)
    assert _refusal(_run(device, msg.X_REPORT, cashier)) == err.WRONG_PASSWORD  # reports need an administrator
    assert _refusal(_run(device, msg.Z_REPORT, msg.PasswordRequest())) == err.SHIFT_NOT_OPEN
    device.model.open_shift()
    assert _refusal(_run(device, msg.OPEN_SHIFT, msg.PasswordRequest())) == err.NOT_IN_THIS_MODE
    assert _refusal(_run(device, msg.SET_TIME, msg.SetTimeRequest(START.time()))) == err.NOT_IN_THIS_MODE
    device.model.open_receipt()
    assert _refusal(_run(device, msg.X_REPORT, msg.PasswordRequest())) == err.RECEIPT_OPEN


def test_scripted_refusal_fires_once_and_changes_nothing() -> None:
    device = ShtrihDevice(_model())
    device.model.open_shift()
    device.action_faults.refuse_next(SimAction.Z_REPORT, err.NO_RECEIPT_PAPER)
    assert _refusal(_run(device, msg.Z_REPORT, msg.PasswordRequest())) == err.NO_RECEIPT_PAPER
    assert device.model.shift_open
    assert _refusal(_run(device, msg.Z_REPORT, msg.PasswordRequest())) is None
    assert not device.model.shift_open


def test_a_link_drop_without_execution_loses_the_request_and_keeps_the_state() -> None:
    device = ShtrihDevice(_model())
    device.model.open_shift()
    device.action_faults.drop_link_during(SimAction.Z_REPORT, seconds=0.3, execute=False)
    frame = bytes.fromhex("02 05 41 1E 00 00 00 5A")
    assert device.feed(frame) == b""  # not even the ACK leaves
    assert device.outage.active and device.feed(b"\x05") == b""
    assert device.model.shift_open
    time.sleep(0.35)
    assert device.feed(b"\x05") == b"\x15"  # back: idle, NAK to ENQ


def test_fault_scripts_are_checked() -> None:
    with pytest.raises(ValueError):
        ActionFaults().refuse_next(SimAction.X_REPORT, 0)
    with pytest.raises(ValueError):
        ActionFaults().drop_link_during(SimAction.X_REPORT, seconds=0)


def test_an_outage_starts_later_when_asked_and_reports_its_end() -> None:
    now = [100.0]
    outage = LinkOutage(monotonic=lambda: now[0])
    outage.begin(2.0, swallow_answer=False, after=0.5)
    assert not outage.active and not outage.over
    now[0] = 100.6
    assert outage.active
    now[0] = 103.0
    assert not outage.active and outage.over
    assert outage.outgoing(b"answer") == b"answer"


# ---------------------------------------------------------------------------- ATOL, through the driver


@pytest.fixture
def atol() -> tuple[AtolDevice, AtolSession]:
    install_sim_url_handler()
    device = AtolDevice(_model())
    name = f"sim-act-{uuid.uuid4().hex[:8]}"
    register_sim(name, device)
    session = AtolSession(open_link(f"sim://{name}", 115200), timeout=0.2, retries=1)
    yield device, session
    session.link.close()
    unregister_sim(name)


def test_atol_sets_the_clock_only_in_the_select_mode(atol: tuple[AtolDevice, AtolSession]) -> None:
    device, session = atol
    session.execute(EnterMode(EnterMode.REGISTRATION, 0))
    with pytest.raises(DeviceRefused) as refused:
        session.execute(SetDateTime(datetime(2026, 7, 1, 8, 0, 0)))
    assert refused.value.code == atol_errors.NOT_IN_THIS_MODE
    assert device.model.now() == START


def test_atol_reboot_answers_drops_off_then_comes_back_in_the_select_mode(atol: tuple[AtolDevice, AtolSession]) -> None:
    device, session = atol
    device.reboot_seconds = 0.5
    session.execute(EnterMode(EnterMode.X_REPORTS, 0))
    session.reboot()
    time.sleep(0.3)
    with pytest.raises(NoAnswer):
        session.execute(GetDeviceStatus())
    time.sleep(0.6)
    assert session.execute(GetDeviceStatus()).mode == 0 and device.reboots == 1


def test_action_faults_from_the_command_line_spec(capsys: pytest.CaptureFixture[str]) -> None:
    from firmware_sim.cli import main

    device = ShtrihDevice(_model())
    device.model.open_shift()
    device.action_faults.add_spec("z_report:refuse:0x6B").add_spec("open_shift:drop:0.2:lost")
    assert _refusal(_run(device, msg.Z_REPORT, msg.PasswordRequest())) == err.NO_RECEIPT_PAPER
    for bad in ("z_report", "coffee:refuse:1", "z_report:refuse:x", "x_report:drop:1:maybe", "reboot:drop:0"):
        with pytest.raises(ValueError, match="action fault"):
            ActionFaults().add_spec(bad)
    assert main(["--action-fault", "z_report:explode"]) == 2
    assert "expected ACTION:refuse:CODE" in capsys.readouterr().err
