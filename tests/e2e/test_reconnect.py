"""Unplug → the poll fails with a typed error; replug → the next poll succeeds, same process."""

from __future__ import annotations

from datetime import datetime

import pytest

from agent.drivers.errors import DriverError
from agent.drivers.link import LinkClosed, LinkError, PortNotFound
from agent.drivers.registry import DeviceConnection
from firmware_sim.clock import ManualClock
from firmware_sim.devices import make_device
from firmware_sim.hosts import register_sim
from firmware_sim.hosts.pty import PtyHost
from firmware_sim.hosts.tcp import TcpHost
from firmware_sim.model import RegisterModel

PROTOCOLS = ["shtrih", "atol"]


def make_model() -> RegisterModel:
    model = RegisterModel(clock=ManualClock(datetime(2026, 3, 2, 9, 0)))
    model.open_shift()
    return model


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tcp_unplug_then_replug_recovers_without_restart(protocol: str) -> None:
    model = make_model()
    with TcpHost(make_device(protocol, model, tcp=True)) as host, DeviceConnection(
        protocol, host.address, timeout=0.3, retries=1
    ) as connection:
        assert connection.poll().shift.number == 1
        host.unplug()
        with pytest.raises((LinkClosed, DriverError)):
            connection.poll()  # the dropped connection surfaces as a typed error
        with pytest.raises(PortNotFound):
            connection.poll()  # reconnecting while unplugged: refused
        model.close_shift()
        model.open_shift()
        host.replug()
        state = connection.poll()
        assert state.shift.number == 2  # fresh data from the same DeviceConnection
        assert connection.reconnects >= 2
        assert host.connections == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sim_unplug_then_replug_recovers(protocol: str) -> None:
    model = make_model()
    registration = register_sim(f"reconnect-{protocol}", make_device(protocol, model))
    try:
        with DeviceConnection(protocol, registration.address, timeout=0.2, retries=1) as connection:
            assert connection.poll().fn.serial == model.fn_serial
            registration.unplug()
            with pytest.raises(LinkClosed):
                connection.poll()
            with pytest.raises(LinkError):
                connection.poll()
            registration.replug()
            assert connection.poll().fn.serial == model.fn_serial
    finally:
        registration.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pty_dead_cable_then_replug_recovers(protocol: str) -> None:
    model = make_model()
    with PtyHost(make_device(protocol, model)) as host, DeviceConnection(
        protocol, host.address, timeout=0.1, retries=0
    ) as connection:
        assert connection.poll().shift.number == 1
        host.unplug()  # a pty path cannot vanish: the device just stops answering
        with pytest.raises(DriverError):
            connection.poll()
        host.replug()
        assert connection.poll().shift.number == 1
