"""``UsbLink``: a ``ByteLink`` over raw USB bulk endpoints (pyusb), for ATOL registers (VID 0x2912).

URL: ``usb://2912`` (first ATOL device), ``usb://2912:PID``, ``usb://2912:PID/SERIAL``, and
optionally ``?bus=N&address=M`` to pin one of several identical devices. Tests pass a pyusb
backend (``firmware_sim.usb_backend``) so pyusb's own ``usb.core`` code runs unchanged; the CLI
takes one from ``KASSA_USB_BACKEND=module:factory`` (e.g. the simulator's, to try ``probe`` and
``detect`` on raw USB without hardware).

Failures become the link errors the installer can act on: not found → ``PortNotFound``,
access denied → ``PortPermissionDenied`` with the udev rule, unplugged → ``LinkClosed``. After
``LinkClosed`` the link is closed; the next ``open()`` finds the device again (it may be a new
USB address after a replug).
"""

from __future__ import annotations

import errno
import importlib
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import usb.core
import usb.util

from agent.drivers.link import LinkClosed, LinkError, PortNotFound, PortPermissionDenied

ATOL_VENDOR_ID = 0x2912
UDEV_RULE = 'SUBSYSTEM=="usb", ATTRS{idVendor}=="2912", MODE="0660", GROUP="dialout"'
PERMISSION_HINT = (
    f"add the udev rule {UDEV_RULE} to /etc/udev/rules.d/99-atol.rules, "
    "run `udevadm control --reload && udevadm trigger`, add the agent's user to dialout and replug the register"
)
NOT_FOUND_HINT = (
    "check that the register is on and its USB cable is connected; `lsusb -d 2912:` lists ATOL devices. "
    "A register set to USB-COM mode appears as /dev/ttyACM* instead: use its serial port URL"
)
UNPLUGGED_HINT = "the register was unplugged or switched off; the link is reopened on the next poll"
_LIBUSB_NO_DEVICE = -4
_LIBUSB_ACCESS = -3


@dataclass(frozen=True, slots=True)
class UsbAddress:
    vendor_id: int
    product_id: int | None = None
    serial: str | None = None
    bus: int | None = None
    address: int | None = None


def parse_usb_url(url: str) -> UsbAddress:
    parts = urlsplit(url)
    if parts.scheme != "usb" or not parts.netloc:
        raise LinkError(f"not a USB URL: {url!r}", "use usb://2912 or usb://2912:PID[/SERIAL]")
    vendor, _, product = parts.netloc.partition(":")
    query = parse_qs(parts.query)
    try:
        return UsbAddress(
            vendor_id=int(vendor, 16),
            product_id=int(product, 16) if product else None,
            serial=parts.path.strip("/") or None,
            bus=int(query["bus"][0]) if "bus" in query else None,
            address=int(query["address"][0]) if "address" in query else None,
        )
    except ValueError as exc:
        raise LinkError(
            f"bad USB URL {url!r}: {exc}", "IDs are hex (usb://2912:0100), bus/address decimal"
        ) from exc


def _usb_error(exc: usb.core.USBError, what: str) -> LinkError:
    code = getattr(exc, "backend_error_code", None)
    if exc.errno == errno.ENODEV or code == _LIBUSB_NO_DEVICE:
        return LinkClosed(f"{what}: USB device gone ({exc})", UNPLUGGED_HINT)
    if exc.errno in (errno.EACCES, errno.EPERM) or code == _LIBUSB_ACCESS:
        return PortPermissionDenied(f"{what}: access denied ({exc})", PERMISSION_HINT)
    return LinkError(f"{what}: USB error ({exc})")


USB_BACKEND_ENV = "KASSA_USB_BACKEND"
_environment_backends: dict[str, Any] = {}


def backend_from_environment() -> Any:
    """The pyusb backend named by ``KASSA_USB_BACKEND`` (``module:factory``), or None for libusb.

    Built once per process, so every lookup (detect, then probe's identify and poll) sees the
    same device.
    """
    spec = os.environ.get(USB_BACKEND_ENV, "").strip()
    if not spec:
        return None
    if spec not in _environment_backends:
        module, _, factory = spec.partition(":")
        try:
            _environment_backends[spec] = getattr(importlib.import_module(module), factory)()
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            raise LinkError(
                f"{USB_BACKEND_ENV}={spec!r} cannot be loaded: {exc}", f"unset {USB_BACKEND_ENV} to use libusb"
            ) from exc
    return _environment_backends[spec]


def _find(address: UsbAddress, backend: Any) -> list[Any]:
    if backend is None:
        backend = backend_from_environment()
    criteria: dict[str, int] = {"idVendor": address.vendor_id}
    if address.product_id is not None:
        criteria["idProduct"] = address.product_id
    try:
        devices = list(usb.core.find(find_all=True, backend=backend, **criteria))
    except usb.core.NoBackendError as exc:
        raise PortNotFound(
            "no libusb backend for raw USB", "install libusb-1.0 (apt install libusb-1.0-0)"
        ) from exc
    if address.bus is not None:
        devices = [d for d in devices if d.bus == address.bus]
    if address.address is not None:
        devices = [d for d in devices if d.address == address.address]
    if address.serial is not None:
        serials = [(d, _serial(d)) for d in devices]
        matching = [d for d, serial in serials if serial == address.serial]
        if not matching and any(serial is None for _, serial in serials):
            # libusb must open a device to read its serial string: on Linux that fails without the rule.
            raise PortPermissionDenied("cannot read the serial number of the ATOL USB device", PERMISSION_HINT)
        devices = matching
    return devices


def _serial(device: Any) -> str | None:
    """The USB serial string, or None when unreadable (no permission yet, no string descriptor)."""
    try:
        value = device.serial_number
    except (usb.core.USBError, ValueError, NotImplementedError):
        return None
    return str(value) if value else None


def find_atol_usb_devices(backend: Any = None) -> list[str]:
    """URLs of every ATOL device on the bus, for ``kassa-agent detect``; [] when USB is unavailable."""
    try:
        devices = _find(UsbAddress(ATOL_VENDOR_ID), backend)
    except LinkError:
        return []
    urls = []
    for device in devices:
        base = f"usb://{device.idVendor:04x}:{device.idProduct:04x}"
        serial = _serial(device)
        urls.append(f"{base}/{serial}" if serial else f"{base}?bus={device.bus}&address={device.address}")
    return urls


class UsbLink:
    """Bulk OUT/IN endpoints of the first interface that has both; reads are buffered by packet."""

    def __init__(
        self, url: str, *, backend: Any = None, detach_kernel_driver: bool = True, write_timeout: float = 1.0
    ) -> None:
        self.url = url
        self.address = parse_usb_url(url)
        self.backend = backend
        self.detach_kernel_driver = detach_kernel_driver
        self.write_timeout = write_timeout
        self._device: Any = None
        self._interface: int | None = None
        self._ep_out: Any = None
        self._ep_in: Any = None
        self._received = bytearray()

    @property
    def is_open(self) -> bool:
        return self._device is not None

    def open(self) -> None:
        if self._device is not None:
            return
        devices = _find(self.address, self.backend)
        if not devices:
            raise PortNotFound(f"no USB device matches {self.url}", NOT_FOUND_HINT)
        device = devices[0]
        try:
            self._claim(device)
        except usb.core.USBError as exc:
            usb.util.dispose_resources(device)
            raise _usb_error(exc, f"opening {self.url}") from exc
        self._device = device
        self._received.clear()

    def _claim(self, device: Any) -> None:
        try:
            config = device.get_active_configuration()
        except usb.core.USBError as exc:
            if (
                exc.errno in (errno.EACCES, errno.EPERM)
                or getattr(exc, "backend_error_code", None) == _LIBUSB_ACCESS
            ):
                raise
            device.set_configuration()  # unconfigured device
            config = device.get_active_configuration()
        for interface in config:
            ep_out = usb.util.find_descriptor(interface, custom_match=_bulk(usb.util.ENDPOINT_OUT))
            ep_in = usb.util.find_descriptor(interface, custom_match=_bulk(usb.util.ENDPOINT_IN))
            if ep_out is None or ep_in is None:
                continue
            number = interface.bInterfaceNumber
            if self.detach_kernel_driver and self._kernel_driver_active(device, number):
                device.detach_kernel_driver(number)
            usb.util.claim_interface(device, number)
            self._interface, self._ep_out, self._ep_in = number, ep_out, ep_in
            return
        raise PortNotFound(f"{self.url} has no interface with bulk IN and OUT endpoints", NOT_FOUND_HINT)

    @staticmethod
    def _kernel_driver_active(device: Any, interface: int) -> bool:
        try:
            return bool(device.is_kernel_driver_active(interface))
        except NotImplementedError:
            return False  # not on this OS (Windows/macOS): nothing to detach

    def close(self) -> None:
        device, self._device = self._device, None
        if device is None:
            return
        try:
            if self._interface is not None:
                usb.util.release_interface(device, self._interface)
        except usb.core.USBError:
            pass  # already gone: releasing an unplugged device's interface cannot succeed
        finally:
            usb.util.dispose_resources(device)
            self._received.clear()

    def _require_open(self) -> Any:
        if self._device is None:
            raise LinkClosed(f"{self.url} is not open", UNPLUGGED_HINT)
        return self._device

    def _fail(self, exc: usb.core.USBError, what: str) -> LinkError:
        error = _usb_error(exc, f"{what} {self.url}")
        if isinstance(error, LinkClosed):
            self.close()
        return error

    def write(self, data: bytes) -> None:
        device = self._require_open()
        try:
            device.write(self._ep_out, data, timeout=max(1, int(self.write_timeout * 1000)))
        except usb.core.USBTimeoutError as exc:
            raise LinkError(f"writing to {self.url} timed out", "the register is not taking data") from exc
        except usb.core.USBError as exc:
            raise self._fail(exc, "writing to") from exc

    def read(self, size: int, timeout: float) -> bytes:
        device = self._require_open()
        deadline = time.monotonic() + timeout
        while len(self._received) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                # Read whole packets: a bulk IN buffer shorter than the packet overflows.
                chunk = device.read(
                    self._ep_in, max(size, self._ep_in.wMaxPacketSize), timeout=max(1, int(left * 1000))
                )
            except usb.core.USBTimeoutError:
                break  # the backend waited for us
            except usb.core.USBError as exc:
                raise self._fail(exc, "reading from") from exc
            self._received += bytes(chunk)
        out = bytes(self._received[:size])
        del self._received[:size]
        return out

    def discard_input(self) -> None:
        self._received.clear()
        while self._device is not None and self.read(self._ep_in.wMaxPacketSize, 0.001):
            self._received.clear()


def _bulk(direction: int) -> Any:
    def match(endpoint: Any) -> bool:
        return bool(
            usb.util.endpoint_direction(endpoint.bEndpointAddress) == direction
            and usb.util.endpoint_type(endpoint.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
        )

    return match
