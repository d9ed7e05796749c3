"""Railyard watches itself: Prometheus metrics with the official `prometheus-client`.

Counters and histograms are process-local objects; under several gunicorn workers (and the
worker and sweeper processes) they live in prometheus-client's multiprocess mode, switched on by
PROMETHEUS_MULTIPROC_DIR (`run-all` points it at `instance/prometheus/` and empties it at start).
The environment variable must be set before `prometheus_client` is first imported, which is why
`run-all` sets it in the parent and its children inherit it.

Gauges that describe the database (runs by status, halted runs) and Redis (queue depth) are not
kept in any process: a collector reads them at scrape time, so every web worker answers the same.
"""

import hmac
import ipaddress
import os
import shutil
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from flask import Flask, Response, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from webapp import redis_conn
from webapp.extensions import db
from webapp.models import PipelineRun
from webapp.models.pipelines import RUN_ACTIVE_STATUSES, RUN_ENDED_STATUSES

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Lag buckets: the engine's promise is "about a second after due"; the tail shows a sweeper pass.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

TRANSITIONS = Counter(
    "railyard_transitions_applied_total",
    "Stage transitions and rollout steps applied by the engine.")
LAG = Histogram(
    "railyard_transition_lag_seconds",
    "Time from a run being due to its transition committed.", buckets=LAG_BUCKETS)
SDK_REQUESTS = Counter(
    "railyard_sdk_requests_total", "SDK API requests by endpoint and status code.",
    ["endpoint", "status"])
SDK_LATENCY = Histogram(
    "railyard_sdk_request_duration_seconds", "SDK API request latency by endpoint.",
    ["endpoint"], buckets=LATENCY_BUCKETS)
GATE_CHECKS = Counter(
    "railyard_health_checks_total", "Health check evaluations by kind and result.",
    ["kind", "result"])
AUTO_ROLLBACKS = Counter(
    "railyard_automatic_rollbacks_total", "Flags rolled back by an unhealthy stage.")

# The SDK endpoints (Flagsmith's SDK API) whose traffic is counted.
SDK_ENDPOINTS = frozenset({
    "api.flags", "api.environment_document", "api.identify", "api.identity"})


def transitions_applied(due_times: Iterable[datetime | None], applied_at: datetime) -> None:
    """Count transitions committed at `applied_at`, observing each one's lag behind its due time.
    Never raises: metrics must not fail a transition that is already committed."""
    try:
        for due in due_times:
            TRANSITIONS.inc()
            if due is not None:
                LAG.observe(max(0.0, (applied_at - due).total_seconds()))
    except Exception:  # noqa: BLE001, S110 — a metrics file problem must not fail the engine
        pass


class _DatabaseCollector(Collector):
    """Runs by status and halted runs from the database, queue depth from Redis, at scrape time."""

    def collect(self):


        by_status = GaugeMetricFamily(
            "railyard_runs", "Pipeline runs by status (ended runs included).", labels=["status"])
        halted = GaugeMetricFamily("railyard_runs_halted", "Runs halted after repeated failures.")
        rows = dict(db.session.execute(
            select(PipelineRun.status, func.count()).group_by(PipelineRun.status)).all())
        db.session.rollback()

        for status in (*RUN_ACTIVE_STATUSES, *RUN_ENDED_STATUSES):
            by_status.add_metric([status], rows.get(status, 0))
        halted.add_metric([], rows.get("halted", 0))
        yield by_status
        yield halted
        queued = GaugeMetricFamily(
            "railyard_queue_depth", "Jobs waiting in the engine's RQ queue, by registry.",
            labels=["registry"])
        try:
            queue = redis_conn.queue()
            queued.add_metric(["queued"], queue.count)
            queued.add_metric(["scheduled"], queue.scheduled_job_registry.count)
        except Exception:  # noqa: BLE001 — Redis away: report no depth rather than fail the scrape
            return
        yield queued


def render() -> Response:
    """The exposition: this process's (or every process's) metrics, then the database's."""
    if os.environ.get(MULTIPROC_ENV):

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    local = CollectorRegistry()
    local.register(_DatabaseCollector())
    return Response(body + generate_latest(local), content_type=CONTENT_TYPE_LATEST)


def allowed() -> bool:
    """METRICS_TOKEN set: `Authorization: Bearer <token>` required. Unset: loopback callers only
    (a Prometheus on the same host, or behind a proxy that keeps /metrics private)."""
    token = current_app.config.get("METRICS_TOKEN") or ""
    if token:
        sent = request.headers.get("Authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def register(app: Flask) -> None:
    """Time SDK requests and serve /metrics."""

    @app.before_request
    def _start_timer():
        if request.endpoint in SDK_ENDPOINTS:
            g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("metrics_started", None)
        if started is not None:
            endpoint = (request.endpoint or "").removeprefix("api.")
            SDK_LATENCY.labels(endpoint).observe(time.perf_counter() - started)
            SDK_REQUESTS.labels(endpoint, str(response.status_code)).inc()
        return response

    @app.get("/metrics", endpoint="metrics")
    def metrics():
        if not allowed():
            abort(403)
        return render()


def prepare_multiproc_dir(instance_path: str) -> str:
    """Empty `instance/prometheus/` for a fresh start (stale files from a previous run would add
    their counts to this one's) and return its path, for PROMETHEUS_MULTIPROC_DIR."""

    folder = Path(instance_path) / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return str(folder)


def remove_multiproc_dir(instance_path: str) -> None:
    """Remove `instance/prometheus/` once every process that counted into it has stopped."""

    shutil.rmtree(Path(instance_path) / "prometheus", ignore_errors=True)


def child_exit(_server, worker) -> None:
    """gunicorn hook: a worker that exits leaves its counters (summed), its live gauges go."""
    if os.environ.get(MULTIPROC_ENV):

        multiprocess.mark_process_dead(worker.pid)
