"""What probe says when the link opened but no protocol got an answer: on a serial port the
protocol or baud rate may be wrong; over TCP there is no baud rate — something accepted the
connection, so the device answers, just not in the protocol(s) tried."""

from __future__ import annotations

from agent.drivers.registry import detection_order

_NAMES = {"shtrih": "Shtrih", "shtrih-alt": "Shtrih alternative-link", "atol": "ATOL", "atol2": "ATOL v2"}
SERIAL_FIX = "check the cable and power; if the protocol or baud rate is unusual, run `kassa-agent detect`"


def is_tcp(url: str) -> bool:
    return url.lower().startswith("socket://")


def _name(protocol: str) -> str:
    return _NAMES.get(protocol, protocol)


def no_answer(url: str, tried: list[str], failures: list[str]) -> tuple[str, str]:
    """The error line and the fix after every protocol in ``tried`` failed on ``url``."""
    if not is_tcp(url):
        return f"no register answered on {url}: " + "; ".join(failures), SERIAL_FIX
    others = [p for p in detection_order() if p not in tried]
    names = [_name(p) for p in tried]
    spoken = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    message = f"the device at {url} accepts the connection but does not answer in the {spoken} protocol"
    if others:
        return message, f"try --protocol {others[0]}" + "".join(f" or --protocol {p}" for p in others[1:])
    return message, (
        "check that this is the register's port (Shtrih 7778 or 12345, ATOL 5555) and that the register's "
        "network exchange is switched on; a second agent or the POS software connected to it can also stay silent"
    )
