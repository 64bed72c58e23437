"""Ingest from a NATS cluster: agents speak MQTT 3.1.1 to any node's MQTT gateway, collectors read
a replicated JetStream stream as competing consumers.

* **Stream** ``jetstream_stream`` over the uplink subjects (the gateway maps
  ``kassa/v1/A/state/R`` to ``kassa.v1.A.state.R``), work-queue retention (a message is gone once
  a collector acked it), ``jetstream_replicas`` copies (3 on a 3-node cluster: one node may die).
* **One durable pull consumer** (named after ``shared_group``) shared by every collector process on
  every machine: JetStream hands each message to one of them. Explicit ack, sent only after the
  transaction holding the message committed; a message not acked within ``jetstream_ack_wait``
  (its collector died mid-batch) goes to another collector — at-least-once into the database,
  duplicates removed by the (agent, session, seq) keys as with MQTT.
* **Downlink**: acks and commands are published on the subject the agent's MQTT subscription
  matches; the gateway delivers them (at QoS 0, as it does for every NATS publish: a lost ack is
  replaced by the next one, a command has its deadline).
* **"Is the collector up"**: NATS publishes are never retained for MQTT subscribers, so the
  ``online`` status is re-published every ``collector_status_period`` seconds; ``offline`` on a
  graceful stop.

nats-py is asyncio; it runs on its own thread's loop and the writer thread calls :meth:`ack` and
:meth:`publish`, which hand the work to that loop without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from collector.config import CollectorConfig
from collector.ingest.consumer import InboundMessage, MessageSink, collector_status_payload, inbound_message
from protocol.mqtt.subjects import subject_to_topic, topic_to_subject
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC, UPLINK_FILTERS

log = logging.getLogger(__name__)

FETCH_BATCH = 256
FETCH_TIMEOUT = 1.0  # seconds a fetch waits for the first message (also how soon stop is noticed)
STREAM_MAX_AGE = 7 * 24 * 3600.0  # seconds: a week without any collector, then the oldest go (agents keep an outbox)
CONNECT_RETRY = 1.0


def uplink_subjects() -> list[str]:
    return [topic_to_subject(topic_filter) for topic_filter in UPLINK_FILTERS]


def stream_config(config: CollectorConfig) -> StreamConfig:
    return StreamConfig(
        name=config.jetstream_stream,
        subjects=uplink_subjects(),
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=config.jetstream_replicas,
        max_age=STREAM_MAX_AGE,
        max_msg_size=config.max_message_bytes,
    )


def consumer_config(config: CollectorConfig) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=config.shared_group,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=config.jetstream_ack_wait,
        max_ack_pending=config.jetstream_max_ack_pending,
        deliver_policy=DeliverPolicy.ALL,
        max_deliver=-1,  # never give up on a message: a poison one is dead-lettered by the writer and acked
    )


class JetStreamSource:
    """The :class:`~collector.ingest.source.IngestSource` for ``nats://`` brokers."""

    def __init__(self, config: CollectorConfig, sink: MessageSink) -> None:
        self._config = config
        self._sink = sink
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the durable consumer exists: from here on nothing is lost
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._nc: NatsClient | None = None
        self._stopping: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._mids = itertools.count(1)
        self._unacked: dict[int, Msg] = {}
        self._acks: deque[Msg] = deque()
        self._ack_flush_scheduled = False

    # --- IngestSource ------------------------------------------------------------------------

    def start(self, wait: float | None = 10.0) -> None:
        self._thread = threading.Thread(target=self._loop.run_forever, name="jetstream-source", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._main(), self._loop)
        if wait is not None and not self.subscribed.wait(wait):
            log.warning("NATS %s not reachable yet; retrying in the background", self._config.broker_url)

    def ack(self, messages: Sequence[InboundMessage]) -> int:
        """Queue the acks of committed messages for one flush on the event loop; returns how many.
        A message of a lost connection is skipped: JetStream delivers it again after ``ack_wait``."""
        acked = 0
        with self._lock:
            if not self.connected.is_set():
                return 0
            for message in messages:
                msg = self._unacked.pop(message.mid, None)
                if msg is not None:
                    self._acks.append(msg)
                    acked += 1
            schedule = acked > 0 and not self._ack_flush_scheduled
            self._ack_flush_scheduled = self._ack_flush_scheduled or acked > 0
        if schedule:
            self._loop.call_soon_threadsafe(self._spawn_ack_flush)
        return acked

    def publish_acks(self, acks: Sequence[tuple[str, bytes]]) -> int:
        """A batch's acks in one hand-off to the event loop (core NATS: at most once, like QoS 0)."""
        nc = self._nc
        if nc is None or not self.connected.is_set() or not acks:
            return 0
        subjects = [(topic_to_subject(topic), payload) for topic, payload in acks]

        async def send() -> None:
            for subject, payload in subjects:
                await nc.publish(subject, payload)

        asyncio.run_coroutine_threadsafe(send(), self._loop)
        return len(acks)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """``retain`` cannot be honoured through NATS; the periodic status re-publish replaces it."""
        nc = self._nc
        if nc is None or not self.connected.is_set():
            return False
        subject = topic_to_subject(topic)
        asyncio.run_coroutine_threadsafe(nc.publish(subject, payload), self._loop)
        return True

    def stop(self) -> None:
        """Give back what was fetched but not committed (another collector gets it at once), say
        ``offline``, close."""
        if self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(Exception):
            future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self.connected.clear()
        self.subscribed.clear()

    # --- the loop's side ----------------------------------------------------------------------

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        while not self._stopping.is_set():
            try:
                await self._connect()
                break
            except (OSError, NatsError) as exc:
                log.warning("cannot reach NATS at %s: %s; retrying", self._config.broker_url, exc)
                await asyncio.sleep(CONNECT_RETRY)
        if self._nc is None:
            return
        await asyncio.gather(self._consume(), self._announce())

    async def _connect(self) -> None:
        user, password = self._config.broker_credentials()
        self._nc = await nats.connect(
            servers=self._config.broker_urls,
            user=user,
            password=password,
            name=self._config.client_id,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=CONNECT_RETRY,
            connect_timeout=5,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            error_cb=self._on_error,
        )
        self.connected.set()
        log.info("connected to NATS %s as %s", _netloc(self._nc), self._config.client_id)

    async def _subscription(self) -> Any:
        """Create (idempotently: every collector does it) the stream and the shared consumer."""
        assert self._nc is not None
        js = self._nc.jetstream()
        wanted = stream_config(self._config)
        try:
            await js.add_stream(wanted)
        except BadRequestError:  # exists with other settings (e.g. created by an operator): use it
            await js.update_stream(wanted)
        await js.add_consumer(self._config.jetstream_stream, consumer_config(self._config))
        subscription = await js.pull_subscribe_bind(self._config.shared_group, stream=self._config.jetstream_stream)
        self.subscribed.set()
        log.info("consuming %s as part of %s", self._config.jetstream_stream, self._config.shared_group)
        return subscription

    async def _consume(self) -> None:
        assert self._stopping is not None
        subscription = None
        while not self._stopping.is_set():
            try:
                if subscription is None:
                    subscription = await self._subscription()
                batch = await subscription.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT)
            except TimeoutError:  # nothing to fetch (nats-py raises asyncio's, which is the builtin)
                continue
            except (NatsError, OSError) as exc:
                if self._stopping.is_set():
                    break
                log.warning("JetStream fetch failed (%r); retrying", exc)
                subscription = None if not self.subscribed.is_set() else subscription
                await asyncio.sleep(CONNECT_RETRY)
                continue
            # The writer's queue blocks when full (backpressure): never block this loop on it.
            await self._loop.run_in_executor(None, self._deliver, batch)

    def _deliver(self, batch: list[Msg]) -> None:
        limit = self._config.max_message_bytes
        for msg in batch:
            mid = next(self._mids)
            with self._lock:
                self._unacked[mid] = msg
            self._sink(
                inbound_message(
                    subject_to_topic(msg.subject), msg.data, mid=mid, qos=1, generation=0, limit=limit
                )
            )

    async def _announce(self) -> None:
        """``online`` now and every ``collector_status_period`` seconds (no retained status over NATS)."""
        assert self._stopping is not None
        while not self._stopping.is_set():
            await self._publish_status("online")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._config.collector_status_period)

    async def _publish_status(self, status: Literal["online", "offline"]) -> None:
        if self._nc is not None and self.connected.is_set():
            with contextlib.suppress(NatsError, OSError):
                await self._nc.publish(topic_to_subject(COLLECTOR_STATUS_TOPIC), collector_status_payload(status))

    def _spawn_ack_flush(self) -> None:
        self._loop.create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        with self._lock:
            acks = list(self._acks)
            self._acks.clear()
            self._ack_flush_scheduled = False
        for msg in acks:
            try:
                await msg.ack()
            except (NatsError, OSError) as exc:  # unacked: JetStream delivers it again after ack_wait
                log.warning("could not ack a JetStream message: %s", exc)

    async def _shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        await self._flush_acks()
        with self._lock:
            unacked = list(self._unacked.values())
            self._unacked.clear()
        for msg in unacked:
            with contextlib.suppress(NatsError, OSError):
                await msg.nak()
        await self._publish_status("offline")
        if self._nc is not None:
            with contextlib.suppress(NatsError, OSError, TimeoutError):
                await self._nc.flush(timeout=2)
            with contextlib.suppress(NatsError, OSError):
                await self._nc.close()
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _on_disconnected(self) -> None:
        self.connected.clear()
        log.warning("lost the NATS connection; reconnecting")

    async def _on_reconnected(self) -> None:
        self.connected.set()
        if self._nc is not None:
            log.info("reconnected to NATS %s", _netloc(self._nc))

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS: %s", exc)


def _netloc(nc: NatsClient) -> str:
    url = nc.connected_url
    return url.netloc if url is not None else "?"
