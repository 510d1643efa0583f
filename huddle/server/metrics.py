"""Prometheus metrics of one hub (its own registry, so several hubs can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rooms = Gauge("huddle_rooms", "Rooms loaded in memory", registry=r)
        self.connections = Gauge("huddle_connections", "Open websocket connections", registry=r)
        self.messages_in = Counter("huddle_messages_in", "Messages received", ["type"], registry=r)
        self._messages_in: dict[type, Counter] = {}
        self.messages_out = Counter("huddle_messages_out", "Messages sent", registry=r)
        self.bytes_in = Counter("huddle_bytes_in", "Bytes received", registry=r)
        self.bytes_out = Counter("huddle_bytes_out", "Bytes sent", registry=r)
        self.updates_stored = Counter("huddle_updates_stored", "Updates committed", registry=r)
        self.store_latency = Histogram(
            "huddle_store_commit_seconds",
            "Time to commit one batch of updates",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
            registry=r,
        )
        self.cross_node_lag = Histogram(
            "huddle_cross_node_lag_seconds",
            "In a cluster: from another node accepting an update to this node applying it",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.store_available = Gauge(
            "huddle_store_available", "1 while the store (database) answers", registry=r
        )
        self.rejected = Counter(
            "huddle_connections_rejected", "Connections refused or closed", ["reason"], registry=r
        )
        self.dropped_updates = Counter(
            "huddle_readonly_updates_dropped", "Updates dropped from read-only users", registry=r
        )

        self.ai_requests = Counter(
            "huddle_ai_requests",
            "AI requests by kind and outcome (ok, cancelled, failed, refused)",
            ["kind", "outcome"],
            registry=r,
        )
        self.ai_first_token = Histogram(
            "huddle_ai_first_token_seconds",
            "From an AI request reaching the hub to the first generated text",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        # Labelled by room and user: bounded by LlmConfig.acceptance_label_pairs (the pairs
        # past it are counted together as room and user "_other").
        self.ai_completions = Counter(
            "huddle_ai_completions",
            "Completions shown, and what became of them: accepted, partly (a start of it "
            "accepted), ignored",
            ["room", "user", "outcome"],
            registry=r,
        )

    def message_in(self, kind: type) -> Counter:
        """``messages_in`` for one message type (its child, looked up once per type: a label
        lookup per message cost more than the count)."""
        child = self._messages_in.get(kind)
        if child is None:
            child = self._messages_in[kind] = self.messages_in.labels(kind.__name__)
        return child

    def on_commit(self, seconds: float, count: int) -> None:
        self.store_latency.observe(seconds)
        self.updates_stored.inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
