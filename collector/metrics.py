"""Prometheus metrics of the collector, on a registry of their own (tests and several services in one
process must not collide in the global default registry). The web layer exposes ``registry``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "kassa_collector_messages", "MQTT messages received, by topic kind", ["kind"], registry=r
        )
        self.invalid = Counter(
            "kassa_collector_invalid_messages", "messages dead-lettered, by reason", ["reason"], registry=r
        )
        self.deduplicated = Counter(
            "kassa_collector_deduplicated_records", "state/event records already stored (redelivery, replay)",
            registry=r,
        )
        self.committed = Counter(
            "kassa_collector_committed_messages", "messages whose batch was committed", registry=r
        )
        self.stale_status = Counter(
            "kassa_collector_stale_status", "status messages of an older session, ignored", registry=r
        )
        self.agent_reinstalls = Counter(
            "kassa_collector_agent_reinstalls",
            "agents seen with a new outbox whose sessions restarted (reinstall, new disk, deleted outbox)",
            registry=r,
        )
        self.rebirths = Counter(
            "kassa_collector_rebirth_requests", "rebirth commands sent after a seq gap", registry=r
        )
        self.actions = Counter(
            "kassa_collector_register_actions",
            "remote actions the dispatcher moved on: sent to the agent, or expired without an answer",
            ["outcome"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "kassa_collector_batch_write_seconds",
            "time to write and commit one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.batch_rows = Histogram(
            "kassa_collector_batch_messages",
            "messages per committed batch",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 5000),
            registry=r,
        )
        self.queue_depth = Gauge("kassa_collector_queue_depth", "messages waiting for the writer", registry=r)
        self.alerts_open = Gauge(
            "kassa_collector_alerts_open", "active alerts by severity", ["severity"], registry=r
        )
        self.evaluations = Counter(
            "kassa_collector_register_evaluations", "register rule evaluations", registry=r
        )
        self.retention_deleted = Counter(
            "kassa_collector_retention_deleted", "rows deleted by retention", ["table"], registry=r
        )
