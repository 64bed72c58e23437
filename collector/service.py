"""The collector process: MQTT consumer → ingest writer → alert evaluator, plus the web app when
there is one.

Start order: database (migrate) → notifier (when a dispatcher is given) → evaluator → writer →
MQTT (so nothing arrives before there is somewhere to put it) → web. Stop order is the reverse of the data flow: web, then the writer
flushes and acks what is queued while the MQTT connection still stands, then the consumer
publishes its retained ``offline`` and disconnects (the persistent session keeps queueing for
us), then the evaluator, the notifier (deliveries in flight finish), then the database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from collector.config import CollectorConfig
from collector.ingest.batcher import IngestWriter, WriterSettings
from collector.ingest.consumer import InboundMessage, MqttConsumer
from collector.ingest.engine import AlertEngine, EvaluationWorker, Notify
from collector.metrics import CollectorMetrics
from collector.notify import AlertNotice, NotificationDispatcher
from collector.storage import create_engine_from_url, migrate

log = logging.getLogger(__name__)

AppFactory = Callable[[CollectorConfig], Any]


def find_app_factory() -> AppFactory | None:
    """``collector.web.create_app`` when the web package exists (it is optional for ingest-only runs)."""
    try:
        module = importlib.import_module("collector.web")
    except ModuleNotFoundError as exc:
        if exc.name not in ("collector.web", "aiohttp"):
            raise
        return None
    factory = getattr(module, "create_app", None)
    return factory if callable(factory) else None


def writer_settings(config: CollectorConfig) -> WriterSettings:
    return WriterSettings(
        batch_max_rows=config.batch_max_rows,
        batch_max_delay=config.batch_max_delay,
        batch_linger=config.batch_linger,
        queue_max=config.queue_max,
        reorder_window=config.reorder_window,
        contiguous_acks=not config.shared,
        enforce_enrollment=config.enforce_enrollment,
        default_tenant=config.default_tenant,
        unassigned_node=config.unassigned_node,
    )


class WebServer:
    """Runs an aiohttp application on its own event-loop thread."""

    def __init__(self, factory: AppFactory, config: CollectorConfig, **extras: Any) -> None:
        self._factory = factory
        self._config = config
        self._extras = extras  # shared objects, passed to the factory where it accepts them
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="collector-web", daemon=True)
        self._runner: Any = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)
        log.info("web app listening on %s", self._config.listen)

    async def _serve(self) -> None:
        from aiohttp import web

        accepted = inspect.signature(self._factory).parameters
        app = self._factory(self._config, **{k: v for k, v in self._extras.items() if k in accepted})
        if inspect.isawaitable(app):
            app = await app
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._config.listen_host, self._config.listen_port).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class NotifierRunner:
    """Runs a ``NotificationDispatcher`` on its own event loop; the alert engine hands notices over
    thread-safely (the grouper is only ever touched on that loop)."""

    def __init__(self, dispatcher: NotificationDispatcher) -> None:
        self.dispatcher = dispatcher
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="notifier", daemon=True)
        self._stop: asyncio.Event | None = None
        self._task: concurrent.futures.Future[None] | None = None

    def start(self) -> None:
        self._thread.start()

        async def make_stop() -> asyncio.Event:
            return asyncio.Event()

        self._stop = asyncio.run_coroutine_threadsafe(make_stop(), self._loop).result(timeout=10)
        self._task = asyncio.run_coroutine_threadsafe(self.dispatcher.run(self._stop), self._loop)

    def submit(self, notice: AlertNotice) -> None:
        self._loop.call_soon_threadsafe(self.dispatcher.submit, notice, datetime.now(UTC))

    def stop(self) -> None:
        if self._stop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            try:
                self._task.result(timeout=30)  # deliveries in flight finish (or give up) first
            except Exception:
                log.exception("the notification dispatcher ended with an error")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class CollectorService:
    def __init__(
        self,
        config: CollectorConfig,
        *,
        app_factory: AppFactory | None = None,
        serve_web: bool = True,
        notify: Notify | None = None,
        dispatcher: NotificationDispatcher | None = None,
        metrics: CollectorMetrics | None = None,
    ) -> None:
        self.config = config
        self.notifier = NotifierRunner(dispatcher) if dispatcher is not None else None
        if notify is None and self.notifier is not None:
            notify = self.notifier.submit
        self.metrics = metrics or CollectorMetrics()
        self.engine: sa.Engine = create_engine_from_url(config.db_url)
        self.alert_engine = AlertEngine(
            self.engine, config.alert_thresholds(), notify=notify, metrics=self.metrics
        )
        self.evaluator = EvaluationWorker(self.alert_engine, period=config.evaluator_period)
        self.consumer = MqttConsumer(config, self._on_message)
        self.writer = IngestWriter(
            self.engine,
            self.consumer,
            settings=writer_settings(config),
            metrics=self.metrics,
            on_changed=self.evaluator.changed,
        )
        factory = app_factory or (find_app_factory() if serve_web else None)
        self.web: WebServer | None = None
        if factory is not None:
            self.web = WebServer(
                factory,
                config,
                engine=self.engine,
                metrics_registry=self.metrics.registry,
                broker_ready=self.consumer.connected.is_set,
            )
        if serve_web and factory is None:
            log.info("collector.web is not installed: ingest only, nothing served on %s", config.listen)
        self._started = False

    def _on_message(self, message: InboundMessage) -> None:
        self.writer.submit(message)

    def start(self, *, wait_for_broker: float | None = 10.0) -> None:
        if self.config.auto_migrate:
            migrate(self.engine)
        if self.notifier is not None:
            self.notifier.start()
        self.evaluator.start()
        self.writer.start()
        self.consumer.start(wait=wait_for_broker)
        if self.web is not None:
            self.web.start()
        self._started = True

    def stop(self) -> None:
        """Graceful: flush and ack what is queued, publish retained offline, disconnect."""
        if not self._started:
            self.engine.dispose()
            return
        self._started = False
        if self.web is not None:
            self.web.stop()
        self.writer.stop()
        self.consumer.stop()
        self.evaluator.stop()
        if self.notifier is not None:
            self.notifier.stop()
        self.engine.dispose()

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (the CLI sets it on SIGTERM/SIGINT)."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()
