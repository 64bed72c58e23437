"""``SerialLink``: a ``ByteLink`` over anything ``serial.serial_for_url`` opens.

Always ``serial_for_url``, never ``serial.Serial(path)``, so one code path serves device paths
(``/dev/ttyACM0``, ``COM3``), network registers (``socket://192.168.1.50:7778`` for Shtrih,
``socket://host:5555`` for ATOL — raw TCP through pyserial), ``loop://`` and plugin schemes such
as the simulator's ``sim://``. Plugin schemes are found through the ``kassa.serial_url_handlers``
entry-point group: each entry names a package holding ``protocol_<scheme>`` modules, appended to
``serial.protocol_handler_packages`` when this module is imported.

Errors become the typed ``LinkError``s with a fix the installer can act on.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket

import serial

from agent.drivers.link import ByteLink, LinkClosed, LinkError, PortNotFound, PortPermissionDenied

log = logging.getLogger(__name__)

URL_HANDLER_GROUP = "kassa.serial_url_handlers"
USB_SCHEME = "usb://"
DEFAULT_BAUDRATE = 115200
DETECT_HINT = "List ports with `kassa-agent detect`"
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(?P<port>[0-9]{1,5})")


def register_url_handlers() -> list[str]:
    """Append every advertised URL-handler package to pyserial's search list (idempotent).

    Called when pyserial does not know a URL's scheme, not at import: scanning the entry points
    imports ``importlib.metadata`` (4.6 MB resident), which an agent on a serial port never needs.
    """
    from importlib.metadata import entry_points

    added = []
    for entry in entry_points(group=URL_HANDLER_GROUP):
        if entry.value not in serial.protocol_handler_packages:
            serial.protocol_handler_packages.append(entry.value)
            added.append(entry.value)
    return added


def serial_for_url(url: str, baudrate: int) -> serial.SerialBase:
    """``serial.serial_for_url``, looking for advertised URL handlers when the scheme is unknown."""
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=0, write_timeout=5)
    except ValueError as exc:
        if "not known" not in str(exc) or not register_url_handlers():
            raise
    return serial.serial_for_url(url, baudrate=baudrate, timeout=0, write_timeout=5)


def _os_errno(exc: BaseException) -> int | None:
    """The OS errno behind a pyserial exception (posix ports carry it; socket:// chains it)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


def _is_device_path(url: str) -> bool:
    return "://" not in url


def _unresolved(exc: BaseException) -> bool:
    """The host name did not resolve (pyserial wraps the ``socket.gaierror``; its errno -2 is no OS errno)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def network_address(url: str) -> tuple[str, int] | None:
    """(host, port) of ``socket://HOST:PORT`` or of a bare ``HOST:PORT`` (an IPv6 host in brackets)."""
    found = _HOST_PORT.fullmatch(url.removeprefix("socket://"))
    if found is None or not 0 < int(found.group("port")) < 65536:
        return None
    return found.group("host").strip("[]"), int(found.group("port"))


def open_error(url: str, exc: BaseException) -> LinkError:
    """Translate a failure to open ``url`` into the typed error with its fix."""
    if url.startswith("socket://") and _unresolved(exc):
        host = network_address(url)
        return PortNotFound(
            f"{url}: the host name {host[0] if host else url!r} does not resolve",
            "check its spelling, or give the register's IP address (e.g. socket://192.168.1.50:7778)",
        )
    code = _os_errno(exc)
    reason = os.strerror(code) if code and code > 0 else str(exc)
    if url.startswith("socket://"):
        if code in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT) or "timed out" in str(exc):
            return PortNotFound(
                f"{url}: nothing accepts connections there ({reason})",
                "check that the register is on, on the network, and that its TCP port is right "
                "(Shtrih 7778 or 12345, ATOL 5555)",
            )
        return PortNotFound(f"{url}: cannot connect ({reason})", "check the host name and port in the URL")
    if code == errno.EACCES:
        return PortPermissionDenied(
            f"permission denied on {url}",
            "add the user to the dialout group: `sudo usermod -aG dialout $USER`, then log in again",
        )
    if _is_device_path(url) and not os.path.exists(url) and network_address(url) is not None:
        return PortNotFound(
            f"{url} is not a port on this computer but looks like a network address",
            f"for a register on the network write socket://{url}",
        )
    if code == errno.ENOENT or (_is_device_path(url) and not os.path.exists(url)):
        return PortNotFound(
            f"{url} does not exist",
            f"is the register switched on and the cable plugged in? {DETECT_HINT}",
        )
    if code == errno.EBUSY:
        return LinkError(f"{url} is busy", "another program holds the port (a second agent, ModemManager?)")
    if isinstance(exc, ValueError) and "protocol" in str(exc):
        return LinkError(
            f"{url}: unknown URL scheme",
            "use a device path (/dev/ttyACM0, COM3), socket://HOST:PORT, usb://2912:PID, loop:// or sim://",
        )
    return LinkError(f"cannot open {url}: {exc}", DETECT_HINT)


class SerialLink:
    """``ByteLink`` over ``serial.serial_for_url``; any I/O failure after open is ``LinkClosed``."""

    def __init__(self, url: str, *, baudrate: int = DEFAULT_BAUDRATE) -> None:
        self.url = url
        self.baudrate = baudrate
        self._port: serial.SerialBase | None = None

    @property
    def is_open(self) -> bool:
        return self._port is not None and bool(self._port.is_open)

    def open(self) -> None:
        if self.is_open:
            return
        try:
            # 8N1, no handshake: both Shtrih (§1.1) and ATOL (§3.1) specify it.
            self._port = serial_for_url(self.url, self.baudrate)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise open_error(self.url, exc) from exc
        _disable_nagle(self._port)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                log.debug("closing %s: %s", self.url, exc)

    def _require(self) -> serial.SerialBase:
        if self._port is None or not self._port.is_open:
            raise LinkClosed(f"{self.url} is not open", "the session reopens it on the next poll")
        return self._port

    def _lost(self, exc: BaseException) -> LinkClosed:
        self.close()
        if self.url.startswith("socket://"):
            # Also what an unreachable host looks like behind a proxy or NAT that accepts and then drops.
            return LinkClosed(
                f"lost {self.url}: the other side closed the connection ({exc})",
                "check that this host and port are the register's (Shtrih 7778 or 12345, ATOL 5555), that it is "
                "on and on the network, and that no other program (a second agent, the POS software) is connected",
            )
        return LinkClosed(
            f"lost {self.url}: {exc}",
            "the register was switched off or unplugged, or the cable is loose",
        )

    def write(self, data: bytes) -> None:
        port = self._require()
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from exc

    def read(self, size: int, timeout: float) -> bytes:
        port = self._require()
        try:
            if port.timeout != timeout:
                port.timeout = max(timeout, 0.0)
            data: bytes = port.read(size)
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from exc
        return data

    def discard_input(self) -> None:
        port = self._require()
        try:
            port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from exc


def _disable_nagle(port: serial.SerialBase) -> None:
    """Small request/answer exchanges over ``socket://`` stall ~40 ms per poll on Nagle + delayed ACK.

    pyserial's socket handler keeps the socket in ``_socket`` and never sets TCP_NODELAY.
    """
    sock = getattr(port, "_socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            log.debug("TCP_NODELAY on %s: %s", port.port, exc)


def open_link(url: str, baudrate: int | None = None) -> ByteLink:
    """An opened link for ``url``: ``UsbLink`` for ``usb://`` (ATOL raw USB), ``SerialLink`` otherwise."""
    link: ByteLink
    if url.lower().startswith(USB_SCHEME):
        from agent.drivers.usb import UsbLink  # pyusb only when a usb:// URL is used

        link = UsbLink(url)
    else:
        link = SerialLink(url, baudrate=baudrate or DEFAULT_BAUDRATE)
    link.open()
    return link
