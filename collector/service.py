"""The collector process: MQTT consumer → ingest writer → alert evaluator, plus the web app when
there is one.

Start order: database (migrate) → notifier (a given dispatcher, or one built from ``[notify]``) → evaluator → writer →
MQTT (so nothing arrives before there is somewhere to put it) → web. Stop order is the reverse of the data flow: web, then the writer
flushes and acks what is queued while the MQTT connection still stands, then the consumer
publishes its retained ``offline`` and disconnects (the persistent session keeps queueing for
us), then the evaluator, the notifier (deliveries in flight finish), then the database.

Notifications: without a ``dispatcher`` or ``notify`` the service builds its own from
``config.notify`` once the schema is migrated — receivers from ``notification_receivers``, the
rights filter (``notification_filter``), silences, SMTP and webhook channels, dead letters to
``notification_deliveries`` — when SMTP is configured or a webhook receiver exists.
Live pages: with the web app served, one ``EventHub`` gets every committed register change and
every alert notice, and the app streams them at ``/events/stream``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from collector.accounts.errors import Conflict, NotFound
from collector.accounts.kep_alerts import KepAlertSweep
from collector.accounts.mail import SmtpMailer
from collector.accounts.new_registers import landing_node
from collector.accounts.rights import notification_filter
from collector.accounts.service import AccountService, AccountSettings
from collector.actions.dispatch import ActionDispatcher
from collector.config import CollectorConfig, CollectorConfigError, NotifySettings
from collector.enrollment.service import EnrollmentService
from collector.enrollment.settings import EnrollmentSettings
from collector.housekeeping import RetentionJob, RetentionPolicy
from collector.ingest.batcher import ChangeListener, IngestWriter, WriterSettings
from collector.ingest.consumer import InboundMessage
from collector.ingest.engine import AlertEngine, EvaluationWorker, Notify
from collector.ingest.engine.leadership import SweepLeadership
from collector.ingest.history_policy import HistoryPolicy
from collector.ingest.source import open_source
from collector.ingest.writes import FreshState
from collector.metrics import CollectorMetrics
from collector.notify import (
    AlertNotice,
    EmailSender,
    GroupTimings,
    NotificationDispatcher,
    NotificationGrouper,
    Renderer,
    RetryPolicy,
    SmtpSettings,
    WebhookSender,
)
from collector.notify.grouping import CanSee
from collector.notify.notice import Receiver
from collector.notify.receivers import (
    DeliveryLog,
    ReceiverDirectory,
    RecentAnswers,
    remembered_rights,
    remembered_silences,
    silence_check,
    webhook_receivers_exist,
)
from collector.storage import begin_write, create_engine_from_url, migrate

log = logging.getLogger(__name__)

AppFactory = Callable[[CollectorConfig], Any]
ANSWER_TTL = 5.0  # seconds a rights or silence answer is reused by the notifier


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
        contiguous_acks=not config.competing_consumers,
        enforce_enrollment=config.enrollment_enforced,
        company=config.company,
        new_registers_node=config.new_registers_node,
        max_session_jump=config.max_session_jump,
        history=history_policy(config),
    )


def history_policy(config: CollectorConfig) -> HistoryPolicy | None:
    if config.history_sample_minutes == 0:
        return None  # every state becomes a history row
    return HistoryPolicy(
        sample_every=timedelta(minutes=config.history_sample_minutes),
        idle_sample_every=timedelta(hours=config.history_idle_sample_hours),
    )


class WebServer:
    """Runs an aiohttp application on its own event-loop thread."""

    def __init__(
        self,
        factory: AppFactory,
        config: CollectorConfig,
        *,
        configure: Callable[[Any], None] | None = None,
        **extras: Any,
    ) -> None:
        self._factory = factory
        self._config = config
        self._configure = configure  # runs on the built app before it is frozen
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
        if self._configure is not None:
            self._configure(app)
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

    def __init__(
        self,
        dispatcher: NotificationDispatcher,
        *,
        tick: float | None = None,
        cleanup: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self._tick = tick
        self._cleanup = cleanup  # closes what lives on this loop (the webhook HTTP session)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="notifier", daemon=True)
        self._stop: asyncio.Event | None = None
        self._task: concurrent.futures.Future[None] | None = None

    def start(self) -> None:
        self._thread.start()

        async def make_stop() -> asyncio.Event:
            return asyncio.Event()

        self._stop = asyncio.run_coroutine_threadsafe(make_stop(), self._loop).result(timeout=10)
        self._task = asyncio.run_coroutine_threadsafe(self._run(self._stop), self._loop)

    async def _run(self, stop: asyncio.Event) -> None:
        try:
            if self._tick is None:  # the dispatcher's own default (and any dispatcher-like object)
                await self.dispatcher.run(stop)
            else:
                await self.dispatcher.run(stop, tick=self._tick)
        finally:
            if self._cleanup is not None:
                await self._cleanup()

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


def guarded(can_see: CanSee) -> CanSee:
    """A rights check that fails closed: a database error must not end the notifier loop."""

    def check(receiver: Receiver, notice: AlertNotice) -> bool:
        try:
            return can_see(receiver, notice)
        except Exception:
            log.exception("rights check for receiver %s failed; not notifying it", receiver.receiver_id)
            return False

    return check


def smtp_settings(settings: NotifySettings) -> SmtpSettings | None:
    if settings.smtp_host is None:
        return None
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password,
        sender=settings.smtp_sender,
        timeout=settings.smtp_timeout,
    )


def account_service_from_config(config: CollectorConfig) -> AccountService | None:
    """Account e-mails (confirm, reset, invite) over ``[notify]`` SMTP; None: the web app logs them."""
    smtp = smtp_settings(config.notify)
    if smtp is None:
        return None
    return AccountService(SmtpMailer(EmailSender(smtp)), settings=AccountSettings(base_url=config.public_url))


def enrollment_from_config(config: CollectorConfig, engine: sa.Engine) -> EnrollmentService | None:
    """The enrollment service when a broker credential backend is configured, else None (no routes)."""
    if not config.enrollment_enabled:
        return None
    return EnrollmentSettings.from_config(config).service(engine)


def notifier_from_config(settings: NotifySettings, engine: sa.Engine) -> NotifierRunner | None:
    """The dispatcher of ``[notify]`` on a migrated database, or None when notifications are off."""
    smtp = smtp_settings(settings)
    if settings.enabled is False:
        return None
    try:
        with engine.connect() as conn:
            webhooks = webhook_receivers_exist(conn)
    except sa.exc.DBAPIError:  # run with auto_migrate off on an old schema: ingest must still work
        log.error("notifications off: the notification tables are missing (run `kassa-collector migrate`)")
        return None
    if settings.enabled is None and smtp is None and not webhooks:
        log.info("notifications off: no SMTP relay configured and no webhook receiver")
        return None
    policy = RetryPolicy(
        attempts=settings.retry_attempts,
        initial_backoff=settings.retry_backoff,
        max_backoff=max(60.0, settings.retry_backoff),
        jitter=min(1.0, settings.retry_backoff),
    )
    dead_letters = DeliveryLog(engine)
    channels: Collection[str] = ("webhook", "email") if smtp is not None else ("webhook",)
    answers = RecentAnswers(ANSWER_TTL)
    grouper = NotificationGrouper(
        ReceiverDirectory(engine, channels=channels, refresh=settings.receivers_refresh),
        remembered_rights(guarded(notification_filter(engine.connect)), answers),
        remembered_silences(silence_check(engine), answers),
        GroupTimings(
            group_wait=timedelta(seconds=settings.group_wait),
            group_interval=timedelta(seconds=settings.group_interval),
            repeat_interval=timedelta(seconds=settings.repeat_interval),
        ),
    )
    webhook = WebhookSender(policy, dead_letters)
    email = EmailSender(smtp, policy, dead_letters) if smtp is not None else None
    dispatcher = NotificationDispatcher(grouper, Renderer(settings.public_url), webhook=webhook, email=email)
    log.info("notifications on: webhook%s", " and e-mail via " + smtp.host if smtp is not None else " only")
    return NotifierRunner(dispatcher, tick=settings.tick, cleanup=webhook.close)


def with_page_link(notice: AlertNotice) -> AlertNotice:
    """Point the message at the register's page in our UI (the renderer makes it absolute)."""
    if notice.url is not None:
        return notice
    return replace(notice, url=f"/registers/{quote(notice.register_id, safe='')}")


def check_company(engine: sa.Engine, company: str, node_name: str) -> None:
    """Fail at start, naming the fix, rather than on the first unenrolled agent's batch."""
    try:
        # begin_write: on SQLite a deferred transaction that reads, then creates the node, failed at once
        # with "database is locked" while another collector's writer held the file (the collector died).
        with begin_write(engine) as conn:
            landing_node(conn, company, node_name)
    except (NotFound, Conflict) as exc:
        raise CollectorConfigError(
            f"company = {company!r}: {exc}; create it with `kassa-collector tenant create --name … --inn …`"
        ) from None


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
        # Neither given: build the dispatcher from [notify] in start(), once the schema exists.
        self._notifier_from_config = notify is None and dispatcher is None
        self._explicit_notify = notify
        self.metrics = metrics or CollectorMetrics()
        self.engine: sa.Engine = create_engine_from_url(config.db_url)
        factory = app_factory or (find_app_factory() if serve_web else None)
        # Live updates only when the app can take our hub (else it streams its own, never fed).
        wants_hub = factory is not None and "event_hub" in inspect.signature(factory).parameters
        self.event_hub: Any = _new_event_hub() if wants_hub else None
        engine_notify: Notify = self._hand_over
        if self.event_hub is not None:
            from collector.web.pages import alert_notice_feed

            engine_notify = alert_notice_feed(self.engine, self.event_hub, then=self._hand_over)
        self.alert_engine = AlertEngine(
            self.engine, config.alert_thresholds(), notify=engine_notify, metrics=self.metrics
        )
        self.kep_alerts = KepAlertSweep(self.engine, config.alert_thresholds(), notify=self._hand_over)
        self.evaluator = EvaluationWorker(
            self.alert_engine, period=config.evaluator_period, also_sweep=(self.kep_alerts,),
            leadership=SweepLeadership(self.engine),  # with $share: one collector sweeps, not each
        )
        self.consumer = open_source(config, self._on_message)  # MQTT or NATS JetStream, by broker_url
        on_changed: ChangeListener = self.evaluator.changed
        actions_changed: Callable[[Collection[str]], None] | None = None
        if self.event_hub is not None:
            from collector.web.pages import register_change_feed

            feed = register_change_feed(self.engine, self.event_hub)
            on_changed = _fan_out(self.evaluator.changed, feed)
            actions_changed = _registers_only(feed)
        # Remote actions the web tier requested: published on this process's broker connection.
        self.actions = ActionDispatcher(
            self.engine, self.consumer.publish, on_changed=actions_changed,
            count=lambda outcome, n: self.metrics.actions.labels(outcome).inc(n),
        )
        self.writer = IngestWriter(
            self.engine,
            self.consumer,
            settings=writer_settings(config),
            metrics=self.metrics,
            on_changed=on_changed,
        )
        self.retention = RetentionJob(
            self.engine,
            RetentionPolicy(config.history_days, config.events_days, config.dead_letters_days),
            period=config.retention_period,
            metrics=self.metrics,
        )
        self.web: WebServer | None = None
        if factory is not None:
            self.web = WebServer(
                factory,
                config,
                configure=self._configure_app,
                engine=self.engine,
                metrics_registry=self.metrics.registry,
                broker_ready=self.consumer.connected.is_set,
                ingest_ready=self.writer.health.check,
                event_hub=self.event_hub,
                account_service=account_service_from_config(config),
                enrollment=enrollment_from_config(config, self.engine),
                action_requested=self.actions.wake,
            )
        if serve_web and factory is None:
            log.info("collector.web is not installed: ingest only, nothing served on %s", config.listen)
        self._started = False

    def _hand_over(self, notice: AlertNotice) -> None:
        """The alert engine's notify: the caller's callable, else our notifier (when running)."""
        if self._explicit_notify is not None:
            self._explicit_notify(notice)
        elif self.notifier is not None:
            self.notifier.submit(with_page_link(notice))

    def _configure_app(self, app: Any) -> None:
        """Give the notification API what its test message needs (the same renderer and relay)."""
        try:
            from aiohttp import web

            from collector.web.api.notifications import NOTIFY_CHANNELS_KEY, SendChannels
        except ModuleNotFoundError:
            return
        if not isinstance(app, web.Application):  # a factory of something else: nothing to give
            return
        settings = self.config.notify
        app[NOTIFY_CHANNELS_KEY] = SendChannels(Renderer(settings.public_url), smtp_settings(settings))

    def _on_message(self, message: InboundMessage) -> None:
        self.writer.submit(message)

    def start(self, *, wait_for_broker: float | None = 10.0) -> None:
        if self.config.auto_migrate:
            migrate(self.engine)
        if self.config.company is not None:
            check_company(self.engine, self.config.company, self.config.new_registers_node)
        if self._notifier_from_config and self.notifier is None:
            self.notifier = notifier_from_config(self.config.notify, self.engine)
        if self.notifier is not None:
            self.notifier.start()
        self.evaluator.start()
        self.retention.start()
        self.writer.start()
        self.consumer.start(wait=wait_for_broker)
        self.actions.start()
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
        self.actions.stop()
        self.writer.stop()
        self.consumer.stop()
        self.evaluator.stop()
        self.retention.stop()
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


def _new_event_hub() -> Any:
    try:
        from collector.web.pages import EventHub
    except ModuleNotFoundError:  # a web package without pages: no live updates
        return None
    return EventHub()


def _registers_only(feed: Callable[[Collection[str], Collection[str]], None]) -> Callable[[Collection[str]], None]:
    """A change feed for what only names registers (remote actions moving on)."""

    def changed(register_ids: Collection[str]) -> None:
        feed(register_ids, ())

    return changed


def _fan_out(
    evaluator: ChangeListener, *feeds: Callable[[Collection[str], Collection[str]], None]
) -> ChangeListener:
    """One ``on_changed`` for the writer: the evaluator gets the parsed states too, the other feeds
    only the ids; one failing never stops the others."""

    def changed(
        register_ids: Collection[str], agent_ids: Collection[str] = (), states: Mapping[str, FreshState] | None = None, /
    ) -> None:
        try:
            evaluator(register_ids, agent_ids, states or {})
        except Exception:
            log.exception("an on_changed listener failed")
        for feed in feeds:
            try:
                feed(register_ids, agent_ids)
            except Exception:
                log.exception("an on_changed listener failed")

    return changed
