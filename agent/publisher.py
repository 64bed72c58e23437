"""The agent's MQTT connection: one fresh paho client per connection, our own backoff.

Why a fresh ``paho.mqtt.client.Client`` per connection: each connection is a new *session*
whose number is in the Last Will, and paho's retry queue would otherwise re-send the previous
connection's in-flight messages under the old client state. Those messages are not lost — they
stay in the outbox and are replayed on ``hist`` — so dropping paho's copy is safe.

Failover: with ``fallback_urls`` the agent starts on ``url`` (give agents different first nodes to
spread a fleet over the cluster) and, after a failed connect or a lost connection, moves to the
next node, round the list. Every connection is a new session either way, so nothing else changes: the outbox replays
what the collector has not acknowledged, whichever node carries it.

Why our own reconnect loop: paho's built-in reconnect backs off without jitter; a fleet of
agents behind one broker restart would reconnect in lock-step. We use exponential backoff
with *full jitter* (sleep uniform(0, min(cap, base·2^n))).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import BrokerConfig, SupervisionConfig
from agent.supervision import FatalHook, SupervisedThread

log = logging.getLogger(__name__)

CONNACK_TIMEOUT = 10.0


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes


class Backoff:
    """Exponential backoff with full jitter between ``base`` and ``cap`` seconds."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 32)  # 2**32 * base is far past any cap
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class MqttPublisher:
    """Keeps one MQTT connection up and hands the runtime a ``publish`` that never blocks.

    Hooks run on these threads: ``on_connected(session)`` on the supervisor thread right after
    CONNACK (it may publish and wait for PUBACKs); ``on_message`` on paho's network thread (it
    must not wait for PUBACKs); ``on_disconnected(session)`` on the supervisor thread.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        client_id: str,
        *,
        new_session: Callable[[], int],
        will: Callable[[int], Will],
        subscriptions: Sequence[str],
        on_connected: Callable[[int], None],
        on_message: Callable[[str, bytes], None],
        on_disconnected: Callable[[int], None] = lambda session: None,
        backoff: Backoff | None = None,
        on_fatal: FatalHook = lambda thread, reason: None,
        supervision: SupervisionConfig | None = None,
    ) -> None:
        self._broker = broker
        self._client_id = client_id
        self._new_session = new_session
        self._will = will
        self._subscriptions = list(subscriptions)
        self._on_connected = on_connected
        self._on_message = on_message
        self._on_disconnected = on_disconnected
        self._backoff = backoff or Backoff(broker.reconnect_min, broker.reconnect_max)
        self._endpoints = broker.endpoints()
        self._node = 0
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._connack = threading.Event()
        self._up = threading.Event()
        self._connack_failure: str | None = None
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._session: int | None = None
        self._connected = False
        self._pending: dict[int, Callable[[], None]] = {}
        self._early_acks: set[int] = set()
        self._on_fatal = on_fatal
        self._supervision = supervision
        self._thread: SupervisedThread | None = None
        self.connections = 0
        self.last_error: str | None = None

    # --- state -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def wait_connected(self, timeout: float) -> bool:
        return self._up.wait(timeout)

    @property
    def thread(self) -> SupervisedThread | None:
        """The supervisor thread once started (for the health file)."""
        return self._thread

    @property
    def endpoint(self) -> tuple[str, int]:
        """The node the agent is connected to, or will try next."""
        return self._endpoints[self._node]

    @property
    def session(self) -> int | None:
        """The session of the live connection, or None while disconnected."""
        return self._session if self._connected else None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        # Supervised: an error while (re)connecting — e.g. the outbox cannot take a new session on a
        # full disk — restarts the loop after a backoff instead of ending publishing for good.
        self._thread = SupervisedThread(
            "mqtt-supervisor", self._supervise, stopping=self._stop, on_fatal=self._on_fatal, policy=self._supervision
        )
        self._thread.start()

    def stop(self, farewell: Callable[[int], Will] | None = None, timeout: float = 5.0) -> None:
        """Publish ``farewell(session)`` (retained) if connected, then disconnect cleanly."""
        self._stop.set()
        with self._lock:
            client, session, connected = self._client, self._session, self._connected
        if client is not None and connected and farewell is not None and session is not None:
            message = farewell(session)
            try:
                info = client.publish(message.topic, message.payload, qos=1, retain=True)
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish the offline status before disconnecting: %s", exc)
        if client is not None:
            client.disconnect()
        self._lost.set()
        if self._thread is not None:
            self._thread.join(timeout + CONNACK_TIMEOUT)

    # --- publishing ---------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, on_ack: Callable[[], None] | None = None
    ) -> bool:
        """Queue a QoS 1 publish on the live connection; False (nothing sent) when disconnected.

        ``on_ack`` runs on paho's network thread when the broker's PUBACK arrives.
        """
        with self._lock:
            client = self._client if self._connected else None
        if client is None:
            return False
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        # paho may deliver the PUBACK before we get here; remember either side of the race.
        callback = on_ack or _ignore
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                early = True
            else:
                self._pending[info.mid] = callback
                early = False
        if early:
            callback()
        return True

    def publish_and_wait(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 10.0) -> bool:
        """Publish and wait for the PUBACK (used for status/birth ordering). Never call on paho's thread."""
        done = threading.Event()
        if not self.publish(topic, payload, retain=retain, on_ack=done.set):
            return False
        while not done.wait(0.05):
            if self._lost.is_set() or timeout <= 0:
                return False
            timeout -= 0.05
        return True

    def subscribe(self, topic: str) -> None:
        with self._lock:
            client = self._client if self._connected else None
        if client is not None:
            client.subscribe(topic, qos=self._broker.subscribe_qos)

    # --- supervisor ---------------------------------------------------------------------

    def _supervise(self) -> None:
        session: int | None = None
        while not self._stop.is_set():
            if session is None:
                session = self._new_session()
            outcome = self._connect_once(session)
            if outcome == "connected":
                self._backoff.reset()
                self._run_connection(session)
                session = None  # a new connection is a new session
                if self._stop.is_set():
                    break
            self._node = (self._node + 1) % len(self._endpoints)  # a lost or refused node: try the next
            delay = self._backoff.next_delay()
            log.info("reconnecting to the broker in %.1f s", delay, extra={"delay": round(delay, 2)})
            self._stop.wait(delay)

    def _make_client(self, session: int) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        user, password = self._broker.credentials()
        client.username_pw_set(user or self._client_id, password)
        if self._broker.tls:
            client.tls_set(
                ca_certs=str(self._broker.ca_file) if self._broker.ca_file else None,
                certfile=str(self._broker.client_cert) if self._broker.client_cert else None,
                keyfile=str(self._broker.client_key) if self._broker.client_key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        will = self._will(session)
        client.will_set(will.topic, will.payload, qos=1, retain=True)
        # Large delays: paho must never reconnect on its own before we stop its thread.
        client.reconnect_delay_set(min_delay=3600, max_delay=3600)
        client.max_queued_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        return client

    def _connect_once(self, session: int) -> str:
        client = self._make_client(session)
        self._connack.clear()
        self._lost.clear()
        self._connack_failure = None
        host, port = self.endpoint
        try:
            client.connect(host, port, keepalive=self._broker.keepalive)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.last_error = f"connect to {host}:{port} failed: {exc}"
            log.warning(self.last_error)
            return "failed"
        client.loop_start()
        if not self._connack.wait(CONNACK_TIMEOUT) or self._connack_failure is not None:
            self.last_error = self._connack_failure or "no CONNACK from the broker"
            log.warning("broker refused or did not answer: %s", self.last_error)
            client.loop_stop()
            client.disconnect()
            return "failed"
        with self._lock:
            self._client = client
            self._session = session
            self._connected = True
            self._pending.clear()
            self._early_acks.clear()
        if not client.is_connected():  # dropped between CONNACK and here: the callback saw no current client
            self._lost.set()
        self.connections += 1
        self.last_error = None
        log.info("connected to the broker", extra={"session": session, "broker": f"{host}:{port}"})
        for topic in self._subscriptions:
            client.subscribe(topic, qos=self._broker.subscribe_qos)
        return "connected"

    def _run_connection(self, session: int) -> None:
        try:
            self._on_connected(session)
        except Exception:
            log.exception("on_connected hook failed")
        self._up.set()  # only now: waiters expect the status and birth to be out
        self._lost.wait()
        with self._lock:
            client = self._client
            self._connected = False
            self._up.clear()
            self._client = None
            self._pending.clear()
        if client is not None:
            client.loop_stop()
        try:
            self._on_disconnected(session)
        except Exception:
            log.exception("on_disconnected hook failed")

    # --- paho callbacks (network thread) ------------------------------------------------

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._connack_failure = f"broker refused the connection: {reason}"
        self._connack.set()

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not self._stop.is_set():
            log.warning("disconnected from the broker: %s", reason)
        self._connack.set()  # unblock a connect attempt that was refused by closing the socket
        with self._lock:
            is_current = client is self._client
        if is_current:
            self._lost.set()

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        """A refused subscription leaves a connection that never hears acks or commands (a cluster
        node whose JetStream is still electing leaders answers so): drop it and try the next node."""
        failed = [str(reason) for reason in reasons if reason.is_failure]
        if failed:
            log.warning("the broker refused a subscription (%s); reconnecting", ", ".join(failed))
            client.disconnect()

    def _handle_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            if client is not self._client:
                return
            callback = self._pending.pop(mid, None)
            if callback is None:
                self._early_acks.add(mid)
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("PUBACK callback failed")

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._on_message(msg.topic, bytes(msg.payload))
        except Exception:
            # A bad command must never take the network thread down with it.
            log.exception("handling %s failed", msg.topic)


def _ignore() -> None:
    return None
