"""The demo's MQTT broker: an embedded amqtt broker on a free loopback port, running on its own
event-loop thread inside the demo process — unless ``KASSA_MQTT_URL`` names a real broker
(Mosquitto, EMQX), which is then used as is.

amqtt speaks MQTT 3.1.1 with retained messages, last wills and persistent sessions, which is all
the agent ↔ collector contract needs (DESIGN §4); it is anonymous here, like a local Mosquitto
with ``allow_anonymous true``. Production uses Mosquitto with per-agent credentials.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

MQTT_URL_ENV = "KASSA_MQTT_URL"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 3  # a free port may be taken between probing and binding; try another


class BrokerStartError(RuntimeError):
    """The embedded broker could not start (the message says why)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def external_broker_url(env: Mapping[str, str] | None = None) -> str | None:
    """``KASSA_MQTT_URL`` when set (``mqtt://host:1883``), else None: embed one."""
    url = (os.environ if env is None else env).get(MQTT_URL_ENV, "").strip()
    return url or None


def amqtt_config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        # Only anonymous auth: the default plugin set also logs every packet and publishes $SYS.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def clear_retained(broker_url: str, topics: list[str], timeout: float = 10.0) -> None:
    """Delete retained messages (an empty retained publish) on a broker that outlives the demo.

    A fresh demo database and fresh agent outboxes restart every agent's session counter, so a
    real broker's retained ``offline`` from the previous run would carry the same session as the
    new ``online`` and make the collector keep the agent offline.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urlsplit(broker_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"kassa-demo-cleaner-{os.getpid()}")
    if parts.username:
        client.username_pw_set(unquote(parts.username), unquote(parts.password or "") or None)
    if parts.scheme == "mqtts":
        client.tls_set()
    client.connect(parts.hostname or "127.0.0.1", parts.port or (8883 if parts.scheme == "mqtts" else 1883))
    client.loop_start()
    try:
        for info in [client.publish(topic, b"", qos=1, retain=True) for topic in topics]:
            info.wait_for_publish(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


class SnapshotDict(dict[Any, Any]):
    """A dict whose iteration walks a copy of its keys/items.

    amqtt 0.12.1 iterates its subscription table across ``await`` points (when a client
    connects: retained messages per subscription; when broadcasting: topic filtering), so a
    second client subscribing meanwhile raised "dictionary changed size during iteration" and
    killed the first client's connection handler. Fifty agents connecting at once hit it.
    """

    def __iter__(self) -> Iterator[Any]:
        return iter(list(super().keys()))

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        return list(super().items())


class EmbeddedBroker:
    """amqtt in a daemon thread; ``start`` returns once it accepts connections."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise BrokerStartError("the embedded broker is not started")
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> str:
        try:
            from amqtt.broker import Broker  # the optional "demo" extra; imported only when embedding
        except ModuleNotFoundError:
            raise BrokerStartError(
                f"amqtt is not installed: pip install -e '.[demo]', or point {MQTT_URL_ENV} at a broker"
            ) from None

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="amqtt-broker", daemon=True)
        self._thread.start()
        last_error: Exception | None = None
        for _ in range(_PORT_ATTEMPTS):
            port = free_port(self.host)

            async def serve(port: int = port) -> Any:
                broker = Broker(amqtt_config(self.host, port), loop=asyncio.get_running_loop())
                broker._subscriptions = SnapshotDict()  # see SnapshotDict; start() only clears it
                await broker.start()
                return broker

            try:
                self._broker = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(START_TIMEOUT)
            except Exception as exc:  # amqtt wraps bind failures in BrokerError
                last_error = exc
                continue
            self.port = port
            log.info("embedded amqtt broker listening on %s", self.url)
            return self.url
        self._stop_loop()
        raise BrokerStartError(f"the embedded amqtt broker did not start: {last_error}")

    def stop(self) -> None:
        """Close every client session and the listener, then end the loop thread."""
        if self._loop is None:
            return
        if self._broker is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(STOP_TIMEOUT)
            except Exception as exc:  # a broker that will not stop cleanly still must not hang the demo
                log.warning("embedded broker shutdown: %s", exc)
            self._broker = None
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()
        self._loop = None
        self._thread = None
