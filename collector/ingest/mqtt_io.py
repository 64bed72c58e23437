"""Cheaper socket I/O for the collector's paho client (paho-mqtt 2.x, through two of its
internals: ``_create_socket`` and ``_packet_queue``; ``tests/collector/test_ingest_mqtt.py`` runs
them against a real broker).

* **Read-ahead.** paho reads each packet with ≥ 3 ``recv()`` calls (command byte, length bytes,
  body) and a ``select()`` before each packet. :class:`ReadAhead` serves them from one 64 KiB
  ``recv()`` and reports what it holds through ``pending()``, the hook paho already polls for TLS
  sockets, so its loop does not wait in ``select()`` while buffered packets remain.
* **Packets in bursts.** paho's loop reads one packet per turn, and each turn costs a
  ``select()``, a write check and a keepalive check; :class:`ReadAheadClient` goes on reading
  while the buffer holds data, up to ``READ_BURST`` packets a turn (so PUBACKs and pings still
  go out between bursts under a constant stream).
* **One write per batch of PUBACKs.** ``Client.ack`` queues each PUBACK as its own packet, with
  a wake-up of the loop thread and a ``send()`` each; :func:`queue_pubacks` queues a batch's
  PUBACKs as one packet.
* **One write per batch of agent acks.** A QoS 1 ``Client.publish`` cost ~53 µs of CPU (message
  object, lock, wake-up, then the broker's PUBACK to parse) — with one ack per agent per batch,
  a quarter of a state message's budget. :func:`queue_publishes` writes a batch's acks as QoS 0
  PUBLISH packets in one ``send()`` (why QoS 0 loses nothing: ``MqttConsumer.publish_acks``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

READ_AHEAD = 64 * 1024
READ_BURST = 256  # packets per loop turn at most
_PUBACK = struct.Struct("!BBH")
_TOPIC_LENGTH = struct.Struct("!H")
_PUBLISH_QOS0 = bytes([mqtt.PUBLISH])


class ReadAhead:
    """A connected socket (plain or TLS) whose reads are served from a read-ahead buffer."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._data = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._data):
            data = self._sock.recv(max(size, READ_AHEAD))  # BlockingIOError / b"" (closed) pass through
            if len(data) <= size:
                return bytes(data)
            self._data, self._pos = bytes(data), 0
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._data) - self._pos + inner

    def __getattr__(self, name: str) -> Any:  # send, fileno, close, setblocking, … of the socket
        return getattr(self._sock, name)


class ReadAheadClient(mqtt.Client):
    """paho's client over a :class:`ReadAhead` socket."""

    def _create_socket(self) -> Any:
        return ReadAhead(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's read step, repeated while the read-ahead buffer holds data (``READ_BURST`` at most).
        A packet cut at the buffer's end is completed by one ``recv()``; an empty socket ends the burst."""
        rc = super().loop_read(max_packets)
        for _ in range(READ_BURST - 1):
            sock = self._sock
            if rc != mqtt.MQTT_ERR_SUCCESS or not isinstance(sock, ReadAhead) or sock.pending() == 0:
                break
            rc = super().loop_read(1)
        return rc


def publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet (no packet id, no properties)."""
    name = topic.encode()
    body = b"".join((_TOPIC_LENGTH.pack(len(name)), name, payload))
    return b"".join((_PUBLISH_QOS0, _remaining_length(len(body)), body))


def _remaining_length(size: int) -> bytes:
    """MQTT's variable-length integer: 7 bits a byte, the high bit set on all but the last."""
    out = bytearray()
    while True:
        size, digit = divmod(size, 128)
        out.append(digit | 0x80 if size else digit)
        if not size:
            return bytes(out)


def queue_publishes(client: mqtt.Client, messages: Iterable[tuple[str, bytes]]) -> None:
    """Queue QoS 0 PUBLISHes of ``(topic, payload)``s as one write. Queued under the PUBACK type, which
    paho writes as opaque bytes (a PUBLISH type with QoS 0 makes it look for a message object)."""
    packet = b"".join(publish_packet(topic, payload) for topic, payload in messages)
    if packet:
        client._packet_queue(mqtt.PUBACK, packet, 0, 1)


def queue_pubacks(client: mqtt.Client, mids: Iterable[int]) -> None:
    """Queue the PUBACKs of ``mids`` (QoS 1) as one write."""
    packet = b"".join(_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids)
    if packet:
        client._packet_queue(mqtt.PUBACK, packet, 0, 1)
