"""Enrollment on the agent side: exchange a one-time token for an identity and broker credentials,
then write them into the agent's TOML config (mode 0600: it holds the broker password).

Only the standard library (``urllib.request``, ``ssl``, ``tomllib``): the agent stays light.
The config is edited as text so the installer's comments and ``[[devices]]`` tables survive;
the result is parsed back with ``tomllib`` before it replaces the file, so a config we could not
update cleanly is reported instead of being written half-right.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import socket
import ssl
import tempfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENROLL_PATH = "/api/v1/enroll"
CONFIG_MODE = 0o600


class EnrollError(Exception):
    """Enrollment failed; ``hint`` tells the installer what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class BadToken(EnrollError):
    """The collector refused the token (unknown, already used or expired)."""


class CollectorUnreachable(EnrollError):
    """No HTTP answer from the collector (DNS, refused, timeout, proxy)."""


class TlsProblem(EnrollError):
    """The HTTPS connection failed its certificate or protocol checks."""


@dataclass(frozen=True, slots=True)
class Enrollment:
    agent_id: str
    broker_url: str
    username: str
    password: str
    broker_fallback_urls: tuple[str, ...] = ()  # a clustered broker's other nodes


# problem "type" slug from the collector → the installer's next step.
_TOKEN_HINTS = {
    "token-unknown": "check the token for typos (copy it whole), or ask the operator for a new one",
    "token-used": "each token works once; ask the operator for a new token for this store",
    "token-expired": "ask the operator for a new token (tokens expire, 24 h by default)",
}


def enroll_url(collector: str) -> str:
    parts = urlsplit(collector)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EnrollError(f"collector URL {collector!r} must look like https://collector.example.ru")
    return collector.rstrip("/") + ENROLL_PATH


def exchange_token(
    collector: str,
    token: str,
    *,
    hostname: str | None = None,
    ca_file: Path | None = None,
    timeout: float = 15.0,
) -> Enrollment:
    """POST the token to the collector; return the identity it issued or raise an :class:`EnrollError`."""
    url = enroll_url(collector)
    body = json.dumps({"token": token.strip(), "hostname": hostname or socket.gethostname()}).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            document = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise _refusal(exc) from None
    except urllib.error.URLError as exc:
        raise _transport_error(url, exc.reason) from None
    except (TimeoutError, ConnectionError, ssl.SSLError) as exc:
        raise _transport_error(url, exc) from None
    except (ValueError, UnicodeDecodeError):
        raise EnrollError(
            f"{url} answered with something that is not JSON", "is this the collector's URL?"
        ) from None
    return _enrollment(document, url)


def _refusal(exc: urllib.error.HTTPError) -> EnrollError:
    try:
        problem = json.loads(exc.read() or b"{}")
    except ValueError:
        problem = {}
    slug = str(problem.get("type", "")).rpartition(":")[2]
    detail = problem.get("detail") or exc.reason
    if slug in _TOKEN_HINTS:
        return BadToken(f"the collector refused the token: {detail}", _TOKEN_HINTS[slug])
    if exc.code == 503:
        return EnrollError(
            f"the collector could not create broker credentials: {detail}", "try again in a minute"
        )
    if exc.code == 404:
        return EnrollError(f"{exc.url}: not found (HTTP 404)", "is --collector the collector's base URL?")
    return EnrollError(f"the collector answered HTTP {exc.code}: {detail}")


def _transport_error(url: str, reason: object) -> EnrollError:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return TlsProblem(
            f"TLS certificate of {url} not trusted: {reason.verify_message}",
            "if the collector uses a private CA, pass its certificate with --ca-file",
        )
    if isinstance(reason, ssl.SSLError):
        return TlsProblem(
            f"TLS handshake with {url} failed: {reason}", "check the URL scheme and port (https://)"
        )
    if isinstance(reason, TimeoutError | socket.timeout):
        return CollectorUnreachable(f"{url}: no answer (timed out)", "check the network, firewall or proxy")
    if isinstance(reason, socket.gaierror):
        return CollectorUnreachable(
            f"{url}: host name not found ({reason})", "check the collector's name and DNS"
        )
    return CollectorUnreachable(
        f"cannot reach {url}: {reason}", "check the URL, the network and that the collector runs"
    )


def _enrollment(document: Any, url: str) -> Enrollment:
    try:
        result = Enrollment(
            agent_id=str(document["agent_id"]),
            broker_url=str(document["broker_url"]),
            username=str(document["username"]),
            password=str(document["password"]),
            broker_fallback_urls=tuple(str(url) for url in document.get("broker_fallback_urls") or ()),
        )
    except (KeyError, TypeError, AttributeError):
        raise EnrollError(f"{url} answered without agent_id/broker_url/username/password") from None
    return result


# --- config file ---------------------------------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*\[")
_BROKER_HEADER_RE = re.compile(r"^\s*\[\s*broker\s*\]\s*(#.*)?$")


def _toml_string(value: str) -> str:
    """A TOML basic string: escape backslash, quote and control characters; the rest stays UTF-8.

    (JSON's escaping is not enough: it writes astral characters as surrogate pairs, which TOML refuses.)
    """
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _key_re(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(key)}\s*=")


def _toml_value(value: str | list[str]) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_string(item) for item in value) + "]"
    return _toml_string(value)


def _set_keys(
    lines: list[str], start: int, end: int, values: dict[str, str | list[str]], insert_at: int
) -> list[str]:
    """Replace ``key = …`` lines of ``values`` within ``lines[start:end]``; insert missing ones at ``insert_at``."""
    out = list(lines)
    missing = dict(values)
    for index in range(start, end):
        for key in list(missing):
            if _key_re(key).match(out[index]):
                out[index] = f"{key} = {_toml_value(missing.pop(key))}"
    return out[:insert_at] + [f"{k} = {_toml_value(v)}" for k, v in missing.items()] + out[insert_at:]


def updated_config(existing: str | None, enrollment: Enrollment, *, ca_file: Path | None = None) -> str:
    """The config text with ``agent_id`` and ``[broker]`` url/username/password set; rest untouched."""
    if existing is None:
        existing = NEW_CONFIG_TEMPLATE.format(when=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    lines = existing.splitlines()
    first_table = next((i for i, line in enumerate(lines) if _HEADER_RE.match(line)), len(lines))
    lines = _set_keys(lines, 0, first_table, {"agent_id": enrollment.agent_id}, insert_at=first_table)
    broker: dict[str, str | list[str]] = {
        "url": enrollment.broker_url, "username": enrollment.username, "password": enrollment.password,
    }
    if enrollment.broker_fallback_urls:
        broker["fallback_urls"] = list(enrollment.broker_fallback_urls)
    if ca_file is not None and enrollment.broker_url.startswith("mqtts://"):
        broker["ca_file"] = str(ca_file)
    header = next((i for i, line in enumerate(lines) if _BROKER_HEADER_RE.match(line)), None)
    if header is None:
        lines += ["", "[broker]"]
        header = len(lines) - 1
    end = next((i for i in range(header + 1, len(lines)) if _HEADER_RE.match(lines[i])), len(lines))
    lines = _set_keys(lines, header + 1, end, broker, insert_at=header + 1)
    text = "\n".join(lines) + "\n"
    _check_written(text, enrollment)
    return text


def _check_written(text: str, enrollment: Enrollment) -> None:
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EnrollError(
            f"could not update the config cleanly ({exc})", "fix the file by hand and run enroll again"
        ) from None
    broker = parsed.get("broker", {})
    got = (parsed.get("agent_id"), broker.get("url"), broker.get("username"), broker.get("password"))
    fallbacks_ok = not enrollment.broker_fallback_urls or broker.get("fallback_urls") == list(enrollment.broker_fallback_urls)
    if got != (enrollment.agent_id, enrollment.broker_url, enrollment.username, enrollment.password) or not fallbacks_ok:
        raise EnrollError(
            "could not update the config cleanly (agent_id/[broker] are defined in an unusual way)",
            "fix the file by hand and run enroll again",
        )


NEW_CONFIG_TEMPLATE = """\
# kassa-agent configuration, written by `kassa-agent enroll` on {when}.
# It holds the broker password: keep it mode 0600, readable by the agent's user only.
# Every other key is described in packaging/agent.toml.example.

[broker]

# One [[devices]] table per register; find them with:  kassa-agent detect
# [[devices]]
# protocol = "shtrih"
# url = "/dev/ttyACM0"
# baudrate = 115200
"""


def write_config(path: Path, text: str, *, owner: str | None = None) -> None:
    """Atomically replace ``path`` with ``text`` at mode 0600.

    Ownership: ``owner`` (a user name; needs root) wins; otherwise, when root rewrites an existing
    file, the file keeps its owner — the agent's user must still be able to read it.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.stat() if path.exists() else None
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    except PermissionError:
        raise EnrollError(
            f"{path}: permission denied", "run enroll as root (sudo) or pass a writable --config"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, CONFIG_MODE)
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
        elif old is not None and os.geteuid() == 0:
            os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, path)
    except KeyError:
        raise EnrollError(f"--owner {owner!r}: no such user") from None
    except PermissionError as exc:
        raise EnrollError(f"{path}: {exc.strerror}", "changing the owner needs root (sudo)") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
