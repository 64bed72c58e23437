"""Credential backends: put an agent's username, password and ACLs into the broker, or take them out.

Two interchangeable implementations of :class:`CredentialBackend`:

* :class:`DynsecBackend` — Mosquitto's dynamic-security plugin. JSON commands go to
  ``$CONTROL/dynamic-security/v1`` over an admin MQTT connection; the plugin answers on
  ``…/v1/response`` and applies changes at once (no reload, and a deleted client is kicked).
  Each agent gets its own role holding its ACLs, and its client is bound to the client id equal
  to its username, so one agent cannot take over another's session by borrowing its client id.
* :class:`PasswordFileBackend` — a ``mosquitto_passwd``-compatible password file plus an ACL
  file whose ``%u`` patterns give every agent the same rules over its own topics; after each
  change the broker is told to reload (SIGHUP) when it is managed on this host.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.enrollment.acl import USERNAME_PATTERN, Access, AclRule, agent_rules, collector_rules
from collector.enrollment.errors import BrokerError
from collector.enrollment.passwords import DEFAULT_ITERATIONS, mosquitto_hash
from protocol.mqtt.topics import is_valid_id

DEFAULT_COLLECTOR_USERNAME = "kassa-collector"


class CredentialBackend(Protocol):
    def add_agent(self, username: str, password: str) -> None:
        """Create the agent's broker account with its ACLs (replacing a half-created one)."""

    def remove_agent(self, username: str) -> None:
        """Delete the account so the next connect is refused; a missing account is not an error."""

    def ensure_collector(self, username: str, password: str) -> None:
        """Create or update the collector's account (read everything, publish downlink topics)."""


def _check_username(username: str) -> None:
    # Ids of the topic contract only: no '/', '+', '#' that could widen an ACL pattern.
    if not is_valid_id(username):
        raise ValueError(f"invalid broker username {username!r}")


# --- dynamic-security plugin -----------------------------------------------------------------


CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
AGENT_ROLE_PREFIX = "kassa-agent-"
COLLECTOR_ROLE = "kassa-collector"


@dataclass(frozen=True)
class AdminConnection:
    """Where and as whom to send dynamic-security commands (the client made by ``dynsec init``)."""

    host: str
    port: int
    username: str
    password: str
    tls: bool = False
    ca_file: Path | None = None
    timeout: float = 5.0


def dynsec_acls(rules: Sequence[AclRule], *, deny_other_reads: bool) -> list[dict[str, Any]]:
    """Plugin ACL entries for ``rules``.

    READ becomes two entries: ``subscribePattern`` (may subscribe to the filter) and
    ``publishClientReceive`` (may be sent matching messages). The plugin's default lets every
    client *receive* anything it managed to subscribe to; ``deny_other_reads`` adds a
    lowest-priority receive deny on ``#`` so a subscription that slips past the subscribe check
    (a shared-subscription spelling, say) still delivers nothing foreign.
    """
    acls: list[dict[str, Any]] = []
    for rule in rules:
        if rule.access is Access.PUBLISH:
            acls.append({"acltype": "publishClientSend", "topic": rule.topic, "allow": True})
        else:
            acls.append({"acltype": "subscribePattern", "topic": rule.topic, "allow": True})
            acls.append({"acltype": "publishClientReceive", "topic": rule.topic, "allow": True})
    if deny_other_reads:
        acls.append({"acltype": "publishClientReceive", "topic": "#", "allow": False, "priority": -1})
    return acls


class DynsecBackend:
    """Talks to the dynamic-security plugin; one short admin connection per change."""

    def __init__(self, admin: AdminConnection) -> None:
        self._admin = admin

    def add_agent(self, username: str, password: str) -> None:
        _check_username(username)
        if username in (self._admin.username, DEFAULT_COLLECTOR_USERNAME):
            raise ValueError(f"{username!r} is an administrative account, not an agent")
        role = AGENT_ROLE_PREFIX + username
        acls = dynsec_acls(agent_rules(username), deny_other_reads=True)
        # Idempotent: left-overs of an attempt that failed half-way are removed first.
        self._run(
            [{"command": "deleteClient", "username": username}, {"command": "deleteRole", "rolename": role}],
            tolerate=("not found",),
        )
        self._run(
            [
                {"command": "createRole", "rolename": role, "acls": acls},
                {"command": "createClient", "username": username, "password": password, "clientid": username},
                {"command": "addClientRole", "username": username, "rolename": role},
            ]
        )

    def remove_agent(self, username: str) -> None:
        _check_username(username)
        # disableClient first: even if the delete failed, the account could no longer log in.
        self._run(
            [
                {"command": "disableClient", "username": username},
                {"command": "deleteClient", "username": username},
                {"command": "deleteRole", "rolename": AGENT_ROLE_PREFIX + username},
            ],
            tolerate=("not found",),
        )

    def ensure_collector(self, username: str, password: str) -> None:
        _check_username(username)
        acls = dynsec_acls(collector_rules(), deny_other_reads=False)
        # The plugin checks a shared subscription by its full "$share/<group>/<filter>" text, so
        # collectors scaled out under $share need the share-prefixed form of their read filter too.
        acls += [
            {"acltype": "subscribePattern", "topic": f"$share/+/{rule.topic}", "allow": True}
            for rule in collector_rules()
            if rule.access is Access.READ
        ]
        self._run([{"command": "deleteRole", "rolename": COLLECTOR_ROLE}], tolerate=("not found",))
        self._run([{"command": "createRole", "rolename": COLLECTOR_ROLE, "acls": acls}])
        self._run(
            [{"command": "createClient", "username": username, "password": password}],
            tolerate=("already exists",),
        )
        self._run(
            [
                {"command": "setClientPassword", "username": username, "password": password},
                {"command": "enableClient", "username": username},
                {"command": "addClientRole", "username": username, "rolename": COLLECTOR_ROLE},
            ]
        )

    def _run(self, commands: list[dict[str, Any]], *, tolerate: tuple[str, ...] = ()) -> None:
        """Send ``commands``; raise :class:`BrokerError` for any error not matching ``tolerate``."""
        failures = []
        for command, response in zip(commands, self.execute(commands), strict=True):
            error = response.get("error")
            if error and not any(text in str(error).lower() for text in tolerate):
                failures.append(f"{command['command']}: {error}")
        if failures:
            raise BrokerError("dynamic-security refused: " + "; ".join(failures))

    def execute(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send one command batch and return the plugin's responses in command order."""
        correlation = {f"kassa-{uuid.uuid4().hex}": index for index in range(len(commands))}
        tagged = [dict(cmd, correlationData=tag) for cmd, tag in zip(commands, correlation, strict=True)]
        with _admin_client(self._admin) as exchange:
            responses = exchange(json.dumps({"commands": tagged}), set(correlation))
        ordered: list[dict[str, Any]] = [{} for _ in commands]
        for tag, response in responses.items():
            ordered[correlation[tag]] = response
        return ordered


@contextlib.contextmanager
def _admin_client(admin: AdminConnection) -> Iterator[Callable[[str, set[str]], dict[str, dict[str, Any]]]]:
    """Connect as the dynsec admin; yield ``exchange(payload, tags) -> {tag: response}``."""
    connected = threading.Event()
    subscribed = threading.Event()
    answered = threading.Condition()
    state: dict[str, Any] = {"refused": None, "responses": {}}

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            state["refused"] = str(reason)
        else:
            client.subscribe(RESPONSE_TOPIC, qos=1)
        connected.set()

    def on_subscribe(_c: Any, _u: Any, _mid: Any, reasons: Any, _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            state["refused"] = f"subscribe to {RESPONSE_TOPIC} refused (is this the dynsec admin?)"
        subscribed.set()

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            document = json.loads(message.payload)
            items = document.get("responses", [])
        except (ValueError, AttributeError):
            return  # not a plugin answer; ignore it
        with answered:
            for item in items:
                if isinstance(item, dict) and "correlationData" in item:
                    state["responses"][str(item["correlationData"])] = item
            answered.notify_all()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"kassa-dynsec-{uuid.uuid4().hex[:12]}")
    client.username_pw_set(admin.username, admin.password)
    if admin.tls:
        client.tls_set(ca_certs=str(admin.ca_file) if admin.ca_file else None)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(admin.host, admin.port, keepalive=max(10, int(admin.timeout * 2)))
    except OSError as exc:
        raise BrokerError(f"cannot reach the broker at {admin.host}:{admin.port}: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(admin.timeout):
            raise BrokerError(f"no CONNACK from {admin.host}:{admin.port} within {admin.timeout} s")
        if state["refused"] is None and not subscribed.wait(admin.timeout):
            raise BrokerError("no SUBACK for the dynamic-security response topic")
        if state["refused"] is not None:
            raise BrokerError(f"dynamic-security admin login refused: {state['refused']}")

        def exchange(payload: str, tags: set[str]) -> dict[str, dict[str, Any]]:
            client.publish(CONTROL_TOPIC, payload, qos=1)
            with answered:
                if not answered.wait_for(lambda: tags <= set(state["responses"]), admin.timeout):
                    raise BrokerError(
                        f"dynamic-security did not answer within {admin.timeout} s (is the plugin loaded?)"
                    )
                return {tag: state["responses"][tag] for tag in tags}

        yield exchange
    finally:
        client.disconnect()
        client.loop_stop()


# --- password file + ACL file ------------------------------------------------------------------


ACL_HEADER = """\
# Generated by the kassa-monitor collector (collector.enrollment.broker): edits are overwritten.
# No topic lines before the first "user" line: anonymous clients get nothing.
"""


def render_acl_file(collector_users: Sequence[str]) -> str:
    """The ACL file: collector accounts by name, every agent through ``%u`` (= its agent id)."""
    lines = [ACL_HEADER]
    for user in sorted(set(collector_users)):
        _check_username(user)
        lines.append(f"user {user}")
        lines.extend(_acl_line("topic", rule) for rule in collector_rules())
        lines.append("")
    lines.append("# Every other authenticated client is an agent: %u is its username, which is its agent id.")
    lines.extend(_acl_line("pattern", rule) for rule in agent_rules(USERNAME_PATTERN))
    return "\n".join(lines) + "\n"


def _acl_line(kind: str, rule: AclRule) -> str:
    return f"{kind} {'write' if rule.access is Access.PUBLISH else 'read'} {rule.topic}"


def parse_password_file(text: str) -> dict[str, str]:
    """``username:hash`` lines → mapping; comments and blank lines are dropped."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if sep:
            entries[user] = hashed
    return entries


@dataclass(frozen=True)
class SighupReload:
    """Tell a local Mosquitto to re-read its password and ACL files: SIGHUP to its pid.

    ``pid_file`` is Mosquitto's ``pid_file`` setting (read on every reload, so a restarted
    broker is found); ``pid`` is for a broker this process started itself.
    """

    pid_file: Path | None = None
    pid: int | None = None

    def __call__(self) -> None:
        pid = self.pid
        if self.pid_file is not None:
            try:
                pid = int(self.pid_file.read_text().strip())
            except (OSError, ValueError) as exc:
                raise BrokerError(f"cannot read the broker pid from {self.pid_file}: {exc}") from None
        if pid is None:
            raise BrokerError("SighupReload needs pid_file or pid")
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise BrokerError(f"cannot signal the broker (pid {pid}) to reload: {exc}") from None


class PasswordFileBackend:
    """Keeps ``password_file`` and ``acl_file`` in Mosquitto's formats; ``reload`` after each change.

    Every change is read-modify-write under an exclusive ``flock`` (several collector processes
    may enroll at once) and each file is replaced atomically, so the broker never reads half a file.
    """

    def __init__(
        self,
        password_file: Path,
        acl_file: Path,
        *,
        collector_users: Sequence[str] = (DEFAULT_COLLECTOR_USERNAME,),
        reload: Callable[[], None] | None = None,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        self.password_file = Path(password_file)
        self.acl_file = Path(acl_file)
        self._collector_users = tuple(collector_users)
        self._reload = reload
        self._iterations = iterations

    def add_agent(self, username: str, password: str) -> None:
        _check_username(username)
        if username in self._collector_users:
            raise ValueError(f"{username!r} is a collector account, not an agent")
        self._change(lambda entries: entries.__setitem__(username, self._hash(password)))

    def remove_agent(self, username: str) -> None:
        _check_username(username)
        self._change(lambda entries: entries.pop(username, None))

    def ensure_collector(self, username: str, password: str) -> None:
        _check_username(username)
        if username not in self._collector_users:
            self._collector_users = (*self._collector_users, username)
        self._change(lambda entries: entries.__setitem__(username, self._hash(password)))

    def _hash(self, password: str) -> str:
        return mosquitto_hash(password, iterations=self._iterations)

    def _change(self, edit: Callable[[dict[str, str]], object]) -> None:
        lock_path = self.password_file.with_name(self.password_file.name + ".lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                text = self.password_file.read_text() if self.password_file.exists() else ""
                entries = parse_password_file(text)
                edit(entries)
                _atomic_write(self.password_file, "".join(f"{u}:{h}\n" for u, h in sorted(entries.items())))
                _atomic_write(self.acl_file, render_acl_file(self._collector_users))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        if self._reload is not None:
            self._reload()


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temp file + rename, keeping the old file's mode and group (the broker's group)."""
    old = path.stat() if path.exists() else None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, (old.st_mode & 0o777) if old else 0o640)
        if old is not None and os.geteuid() == 0:
            os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
