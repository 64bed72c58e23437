"""pyusb's real ``usb.core`` against the fake backend, and ``UsbLink`` + ``AtolSession`` over it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import usb.core
import usb.util

from agent.drivers.atol import AtolSession
from agent.drivers.link import LinkClosed, LinkError, PortNotFound, PortPermissionDenied
from agent.drivers.usb import UDEV_RULE, UsbAddress, UsbLink, find_atol_usb_devices, parse_usb_url
from firmware_sim.atol import PORT_USB, AtolDevice
from firmware_sim.model import RegisterModel
from firmware_sim.usb_backend import BULK_IN, BULK_OUT, SIMULATED_PRODUCT_ID, FakeUsbBackend
from protocol.kkt.atol.link import Deframer, Packet, encode_packet
from protocol.kkt.atol.messages import GetStateCode, encode_request
from protocol.kkt.atol.tasks import Add
from protocol.kkt.state import ShiftStatus

NOW = datetime(2026, 11, 27, 12, 0, 0)
SERIAL = "00106700000001"


@pytest.fixture
def model() -> RegisterModel:
    m = RegisterModel(clock=lambda: NOW, model_name="АТОЛ 30Ф")
    m.open_shift(at=NOW - timedelta(hours=2))
    return m


@pytest.fixture
def backend(model: RegisterModel) -> FakeUsbBackend:
    return FakeUsbBackend(AtolDevice(model, port=PORT_USB), serial=SERIAL)


def test_pyusb_finds_the_device_and_reads_its_descriptors(backend: FakeUsbBackend) -> None:
    device = usb.core.find(idVendor=0x2912, backend=backend)
    assert device is not None
    assert device.idProduct == SIMULATED_PRODUCT_ID and device.bus == 1 and device.address == 7
    assert device.serial_number == SERIAL and device.manufacturer == "ATOL"
    assert usb.core.find(idVendor=0x0483, backend=backend) is None
    (config,) = list(device)
    (interface,) = list(config)
    addresses = sorted(ep.bEndpointAddress for ep in interface)
    assert addresses == [BULK_OUT, BULK_IN]
    assert all(usb.util.endpoint_type(ep.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK for ep in interface)
    usb.util.dispose_resources(device)


def test_bulk_transfers_reach_the_simulated_register(backend: FakeUsbBackend) -> None:
    device = usb.core.find(idVendor=0x2912, backend=backend)
    assert device is not None
    device.set_configuration()
    frame = encode_packet(1, Add(1, encode_request(GetStateCode())).encode())
    assert device.write(BULK_OUT, frame) == len(frame)
    answer = bytes(device.read(BULK_IN, 64))
    assert Deframer().feed(answer) == [Packet(1, b"\xa3\x55\x00\x00")]
    with pytest.raises(usb.core.USBTimeoutError):
        device.read(BULK_IN, 64, timeout=10)
    usb.util.dispose_resources(device)


def test_detect_lists_atol_devices_by_url(backend: FakeUsbBackend) -> None:
    assert find_atol_usb_devices(backend) == [f"usb://2912:{SIMULATED_PRODUCT_ID:04x}/{SERIAL}"]
    backend.access_denied = True  # serial unreadable: the URL pins bus and address instead
    assert find_atol_usb_devices(backend) == [f"usb://2912:{SIMULATED_PRODUCT_ID:04x}?bus=1&address=7"]
    backend.unplug()
    assert find_atol_usb_devices(backend) == []


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("usb://2912", UsbAddress(0x2912)),
        ("usb://2912:0005", UsbAddress(0x2912, 0x0005)),
        ("usb://2912:0005/ABC123", UsbAddress(0x2912, 0x0005, "ABC123")),
        ("usb://2912?bus=3&address=9", UsbAddress(0x2912, bus=3, address=9)),
    ],
)
def test_usb_urls(url: str, address: UsbAddress) -> None:
    assert parse_usb_url(url) == address


@pytest.mark.parametrize("url", ["usb://", "serial:///dev/ttyACM0", "usb://zz"])
def test_bad_usb_urls(url: str) -> None:
    with pytest.raises(LinkError):
        parse_usb_url(url)


def test_session_polls_over_pyusb(backend: FakeUsbBackend, model: RegisterModel) -> None:
    link = UsbLink("usb://2912", backend=backend)
    state = AtolSession(link, timeout=0.05).poll()
    assert link.is_open
    assert state.model == "АТОЛ 30Ф" and state.register_clock == NOW
    assert state.shift.status is ShiftStatus.OPEN and state.shift.opened_at == NOW - timedelta(hours=2)
    assert state.fn.serial == model.fn_serial
    link.close()
    assert not link.is_open and backend.open_handles == 0


def test_unplug_is_link_closed_and_replug_works_again(backend: FakeUsbBackend) -> None:
    link = UsbLink(f"usb://2912:{SIMULATED_PRODUCT_ID:04x}/{SERIAL}", backend=backend)
    session = AtolSession(link, timeout=0.05)
    before = session.poll()
    backend.unplug()
    with pytest.raises(LinkClosed):
        session.poll()
    assert not link.is_open
    with pytest.raises(PortNotFound):
        session.poll()  # still unplugged: reopening finds nothing
    backend.replug()
    assert session.poll() == before
    assert link.is_open


def test_kernel_driver_is_detached_when_permitted(model: RegisterModel) -> None:
    backend = FakeUsbBackend(AtolDevice(model), kernel_driver_active=True)
    link = UsbLink("usb://2912", backend=backend)
    link.open()
    assert backend.kernel_driver_detached and backend.claimed == {0}
    link.close()
    assert backend.claimed == set()

    refused = FakeUsbBackend(AtolDevice(model), kernel_driver_active=True)
    with pytest.raises(LinkError) as info:
        UsbLink("usb://2912", backend=refused, detach_kernel_driver=False).open()
    assert not isinstance(info.value, LinkClosed | PortPermissionDenied)
    assert not refused.kernel_driver_detached


@pytest.mark.parametrize("url", ["usb://2912", f"usb://2912/{SERIAL}"])
def test_access_denied_names_the_udev_rule(model: RegisterModel, url: str) -> None:
    backend = FakeUsbBackend(AtolDevice(model), access_denied=True, serial=SERIAL)
    with pytest.raises(PortPermissionDenied) as info:
        UsbLink(url, backend=backend).open()
    assert UDEV_RULE in info.value.hint
    assert 'SUBSYSTEM=="usb", ATTRS{idVendor}=="2912", MODE="0660", GROUP="dialout"' in str(info.value)


@pytest.mark.parametrize(
    "url", ["usb://2912:0999", "usb://2912/OTHER-SERIAL", "usb://2912?bus=2", "usb://1234"]
)
def test_no_matching_device_is_port_not_found(backend: FakeUsbBackend, url: str) -> None:
    with pytest.raises(PortNotFound) as info:
        UsbLink(url, backend=backend).open()
    assert "lsusb" in info.value.hint


def test_bus_and_address_pin_the_device(backend: FakeUsbBackend) -> None:
    link = UsbLink("usb://2912?bus=1&address=7", backend=backend)
    link.open()
    link.write(encode_packet(1, Add(1, encode_request(GetStateCode())).encode()))
    assert Deframer().feed(link.read(9, 0.05)) == [Packet(1, b"\xa3\x55\x00\x00")]
    assert link.read(5, 0.01) == b""  # nothing more: the timeout comes back empty
    link.discard_input()
    link.close()
