"""A fake pyusb backend: one ATOL register on a pretend bus, so pyusb's real ``usb.core`` runs on the simulator.

It implements the ``usb.backend.IBackend`` methods pyusb calls for ``find``, descriptors,
string descriptors (serial number), open/claim/release and bulk transfers. Bulk OUT data goes
to a :class:`~firmware_sim.endpoint.DeviceEndpoint`; bulk IN returns its buffered answer or
raises ``USBTimeoutError`` at once (virtual time, so timeouts cost nothing in tests).

Errors follow libusb1's convention (``USBError(message, libusb code, errno)``). ``unplug()``
makes the device vanish: enumeration skips it and every handle fails with "no device";
``replug()`` brings it back at a new address with a fresh device state, as a real replug does.
"""

from __future__ import annotations

import array
import errno
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import usb.backend
import usb.core

from firmware_sim.atol import AtolDevice
from firmware_sim.clock import SimClock
from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.scenario import load_scenario

ATOL_VENDOR_ID = 0x2912
# No public list of ATOL PIDs exists (specs §3.1); 0x0005 is a plausible placeholder [I].
SIMULATED_PRODUCT_ID = 0x0005
BULK_OUT, BULK_IN = 0x01, 0x81
MAX_PACKET = 64
LANGID_EN_US = 0x0409
_LIBUSB_ACCESS, _LIBUSB_NO_DEVICE, _LIBUSB_TIMEOUT, _LIBUSB_NOT_FOUND = -3, -4, -7, -5
_GET_DESCRIPTOR = 0x06
_DESC_STRING = 0x03


@dataclass(frozen=True)
class _DeviceDescriptor:
    idVendor: int
    idProduct: int
    bus: int
    address: int
    bLength: int = 18
    bDescriptorType: int = 0x01
    bcdUSB: int = 0x0200
    bDeviceClass: int = 0x00  # class per interface
    bDeviceSubClass: int = 0x00
    bDeviceProtocol: int = 0x00
    bMaxPacketSize0: int = 64
    bcdDevice: int = 0x0100
    iManufacturer: int = 1
    iProduct: int = 2
    iSerialNumber: int = 3
    bNumConfigurations: int = 1
    port_number: int = 1
    port_numbers: tuple[int, ...] = (1,)
    speed: int = 2  # libusb: full speed


@dataclass(frozen=True)
class _ConfigDescriptor:
    bLength: int = 9
    bDescriptorType: int = 0x02
    wTotalLength: int = 9 + 9 + 7 + 7
    bNumInterfaces: int = 1
    bConfigurationValue: int = 1
    iConfiguration: int = 0
    bmAttributes: int = 0x80  # bus powered
    bMaxPower: int = 50  # 100 mA
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _InterfaceDescriptor:
    bLength: int = 9
    bDescriptorType: int = 0x04
    bInterfaceNumber: int = 0
    bAlternateSetting: int = 0
    bNumEndpoints: int = 2
    bInterfaceClass: int = 0xFF  # vendor specific
    bInterfaceSubClass: int = 0x00
    bInterfaceProtocol: int = 0x00
    iInterface: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _EndpointDescriptor:
    bEndpointAddress: int
    bLength: int = 7
    bDescriptorType: int = 0x05
    bmAttributes: int = 0x02  # bulk
    wMaxPacketSize: int = MAX_PACKET
    bInterval: int = 0
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


_ENDPOINTS = (_EndpointDescriptor(BULK_OUT), _EndpointDescriptor(BULK_IN))


@dataclass(frozen=True)
class _Handle:
    generation: int  # which plug-in this handle belongs to


class FakeUsbBackend(usb.backend.IBackend):  # type: ignore[misc]
    """One simulated ATOL device. ``kernel_driver_active`` / ``access_denied`` script installer problems."""

    def __init__(
        self,
        device: DeviceEndpoint,
        *,
        vendor_id: int = ATOL_VENDOR_ID,
        product_id: int = SIMULATED_PRODUCT_ID,
        serial: str = "00106700000001",
        manufacturer: str = "ATOL",
        product: str = "ATOL KKT (simulated)",
        bus: int = 1,
        address: int = 7,
        kernel_driver_active: bool = False,
        access_denied: bool = False,
    ) -> None:
        super().__init__()
        self.device = device
        self.vendor_id, self.product_id = vendor_id, product_id
        self.strings = {1: manufacturer, 2: product, 3: serial}
        self.bus, self.address = bus, address
        self.kernel_driver_active = kernel_driver_active
        self.kernel_driver_detached = False
        self.access_denied = access_denied
        self.plugged = True
        self.generation = 0
        self.configuration = 0  # 0 = unconfigured until the host sets one
        self.claimed: set[int] = set()
        self.open_handles = 0
        self._to_host = bytearray()

    # ------------------------------------------------------------------ test switches

    def unplug(self) -> None:
        self.plugged = False
        self._to_host.clear()
        self.claimed.clear()

    def replug(self) -> None:
        """Back on the bus at the next address; the register rebooted, so its state is fresh."""
        self.plugged = True
        self.generation += 1
        self.address += 1
        self.configuration = 0
        self.device.reset()

    # ------------------------------------------------------------------ enumeration and descriptors

    def enumerate_devices(self) -> list[int]:
        return [self.generation] if self.plugged else []

    def get_parent(self, dev: Any) -> None:
        return None

    def get_device_descriptor(self, dev: Any) -> _DeviceDescriptor:
        return _DeviceDescriptor(self.vendor_id, self.product_id, self.bus, self.address)

    def get_configuration_descriptor(self, dev: Any, config: int) -> _ConfigDescriptor:
        if config != 0:
            raise IndexError(f"no configuration {config}")
        return _ConfigDescriptor()

    def get_interface_descriptor(self, dev: Any, intf: int, alt: int, config: int) -> _InterfaceDescriptor:
        if (intf, alt, config) != (0, 0, 0):
            raise IndexError(f"no interface {intf} alt {alt}")  # pyusb stops iterating alternates here
        return _InterfaceDescriptor()

    def get_endpoint_descriptor(
        self, dev: Any, ep: int, intf: int, alt: int, config: int
    ) -> _EndpointDescriptor:
        if (intf, alt, config) != (0, 0, 0) or not 0 <= ep < len(_ENDPOINTS):
            raise IndexError(f"no endpoint {ep}")
        return _ENDPOINTS[ep]

    # ------------------------------------------------------------------ handles

    def _check(self, handle: _Handle) -> None:
        if not self.plugged or handle.generation != self.generation:
            raise usb.core.USBError(
                "No such device (it may have been disconnected)", _LIBUSB_NO_DEVICE, errno.ENODEV
            )

    def open_device(self, dev: Any) -> _Handle:
        if not self.plugged or dev != self.generation:
            raise usb.core.USBError(
                "No such device (it may have been disconnected)", _LIBUSB_NO_DEVICE, errno.ENODEV
            )
        if self.access_denied:
            raise usb.core.USBError("Access denied (insufficient permissions)", _LIBUSB_ACCESS, errno.EACCES)
        self.open_handles += 1
        return _Handle(self.generation)

    def close_device(self, dev_handle: _Handle) -> None:
        self.open_handles -= 1

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        self._check(dev_handle)
        self.configuration = config_value

    def get_configuration(self, dev_handle: _Handle) -> int:
        self._check(dev_handle)
        return self.configuration

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        self._check(dev_handle)

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        self._check(dev_handle)
        if self.kernel_driver_active:
            raise usb.core.USBError("Resource busy", -6, errno.EBUSY)  # libusb refuses while a driver owns it
        self.claimed.add(intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        self._check(dev_handle)
        self.claimed.discard(intf)

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        self._check(dev_handle)
        return self.kernel_driver_active

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        self._check(dev_handle)
        self.kernel_driver_active = False
        self.kernel_driver_detached = True

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        self._check(dev_handle)
        self.kernel_driver_active = True

    # ------------------------------------------------------------------ transfers

    def bulk_write(
        self, dev_handle: _Handle, ep: int, intf: int, data: array.array[int], timeout: int
    ) -> int:
        self._check(dev_handle)
        if ep != BULK_OUT or intf not in self.claimed:
            raise usb.core.USBError("Entity not found", _LIBUSB_NOT_FOUND, errno.ENOENT)
        self._to_host += self.device.feed(bytes(data))
        return len(data)

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: array.array[int], timeout: int) -> int:
        self._check(dev_handle)
        if ep != BULK_IN or intf not in self.claimed:
            raise usb.core.USBError("Entity not found", _LIBUSB_NOT_FOUND, errno.ENOENT)
        if not self._to_host:
            raise usb.core.USBTimeoutError("Operation timed out", _LIBUSB_TIMEOUT, errno.ETIMEDOUT)
        count = min(len(buff), len(self._to_host))
        buff[:count] = array.array("B", self._to_host[:count])
        del self._to_host[:count]
        return count

    def ctrl_transfer(
        self,
        dev_handle: _Handle,
        bmRequestType: int,
        bRequest: int,
        wValue: int,
        wIndex: int,
        data: array.array[int],
        timeout: int,
    ) -> int:
        """Only GET_DESCRIPTOR(string) is answered: pyusb reads langids and the serial number with it."""
        self._check(dev_handle)
        if bRequest != _GET_DESCRIPTOR or wValue >> 8 != _DESC_STRING:
            raise usb.core.USBError("Pipe error", -9, errno.EPIPE)  # a stall, as real devices do
        index = wValue & 0xFF
        if index == 0:
            body = LANGID_EN_US.to_bytes(2, "little")
        elif index in self.strings:
            body = self.strings[index].encode("utf-16-le")
        else:
            raise usb.core.USBError("Pipe error", -9, errno.EPIPE)
        descriptor = bytes((len(body) + 2, _DESC_STRING)) + body
        count = min(len(data), len(descriptor))
        data[:count] = array.array("B", descriptor[:count])
        return count


SCENARIO_ENV = "KASSA_SIM_SCENARIO"


def scenario_backend() -> FakeUsbBackend:
    """A simulated ATOL register on raw USB running ``$KASSA_SIM_SCENARIO`` (default ``healthy``).

    For ``KASSA_USB_BACKEND=firmware_sim.usb_backend:scenario_backend kassa-agent probe usb://2912``:
    the agent loads it by name, so it never imports the simulator.
    """
    scenario = load_scenario(os.environ.get(SCENARIO_ENV) or "healthy")
    return FakeUsbBackend(AtolDevice(scenario.build(SimClock(datetime.now()))))
