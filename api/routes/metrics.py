"""Prometheus metrics, read from the store at scrape time (so they hold across processes).

Workers, schedulers and API processes share nothing but the database (and
Redis), so counters kept in one process's memory would be wrong: each
scrape runs a few aggregate queries instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from core.loop import rejects
from core.runtime import Runtime
from core.store.models import Match, OutboxItem, SourceState, SyncRun
from core.store.models import Response as ResponseRow

log = logging.getLogger("qloop.api")
router = APIRouter(tags=["health"])


def _ts(value: object) -> float:
    return value.timestamp() if value is not None else 0.0  # type: ignore[attr-defined]


class StoreCollector(Collector):
    """Syncs, outbox, responses, review queue and RQ queue depth, read at each scrape."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily("qloop_store_up", "1 when the store could be read at this scrape")
        try:
            yield from self._store()
            up.add_metric([], 1)
        except Exception as exc:  # a scrape must answer even when the database is down
            log.warning("metrics: cannot read the store: %s", type(exc).__name__)
            up.add_metric([], 0)
        yield up
        if self.rt.config.redis_url:
            yield from self._queues()

    def _store(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        runs = CounterMetricFamily(
            "qloop_sync_runs",
            "Sync runs (pulls and collects) by connector, kind and status",
            labels=["connector", "kind", "status"],
        )
        errors = CounterMetricFamily(
            "qloop_sync_errors",
            "Errors reported by sync runs, by connector",
            labels=["connector"],
        )
        last_error = GaugeMetricFamily(
            "qloop_connector_failing",
            "1 when the connector's last run failed",
            labels=["connector"],
        )
        last_ok = GaugeMetricFamily(
            "qloop_connector_last_success_timestamp_seconds",
            "When the connector last ran without error (0: never)",
            labels=["connector"],
        )
        outbox = GaugeMetricFamily(
            "qloop_outbox_items",
            "Outbox items (pushes) by kind and state",
            labels=["kind", "state"],
        )
        responses = CounterMetricFamily(
            "qloop_responses", "Answers received, by channel and kind", labels=["channel", "kind"]
        )
        review = GaugeMetricFamily("qloop_review_queue_size", "Answers waiting for review")
        rejected = GaugeMetricFamily(
            "qloop_rejected_records",
            "Source records that could not be mapped and are not resolved, by source",
            labels=["source"],
        )
        with self.rt.db.sessions() as s:
            for connector, kind, status, n, errs in s.execute(
                select(
                    SyncRun.connector,
                    SyncRun.kind,
                    SyncRun.status,
                    func.count(),
                    func.coalesce(func.sum(SyncRun.errors), 0),
                ).group_by(SyncRun.connector, SyncRun.kind, SyncRun.status)
            ):
                runs.add_metric([connector, kind, status], n)
                errors.add_metric([connector], errs)
            for conn in s.scalars(select(SourceState)):
                last_error.add_metric([conn.name], 1 if conn.last_error else 0)
                last_ok.add_metric([conn.name], _ts(conn.last_ok_at))
            for kind, state, n in s.execute(
                select(OutboxItem.kind, OutboxItem.state, func.count()).group_by(
                    OutboxItem.kind, OutboxItem.state
                )
            ):
                outbox.add_metric([kind, state], n)
            for channel, kind, n in s.execute(
                select(ResponseRow.channel, ResponseRow.kind, func.count()).group_by(
                    ResponseRow.channel, ResponseRow.kind
                )
            ):
                responses.add_metric([channel, kind], n)
            review.add_metric(
                [], s.scalar(select(func.count()).where(Match.status == "review")) or 0
            )
            open_rejects = dict.fromkeys(self.rt.config.sources, 0) | rejects.open_counts(s)
            for source, n in sorted(open_rejects.items()):
                rejected.add_metric([source], n)
        yield from (runs, _merged(errors), last_error, last_ok, outbox, responses, review, rejected)

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "qloop_queue_depth", "Jobs waiting in each RQ queue", labels=["queue"]
        )
        up = GaugeMetricFamily("qloop_redis_up", "1 when Redis could be read at this scrape")
        try:
            import redis
            from rq import Queue

            conn = redis.Redis.from_url(
                str(self.rt.config.redis_url), socket_timeout=2.0, socket_connect_timeout=2.0
            )
            try:
                for queue in Queue.all(connection=conn):
                    depth.add_metric([queue.name], queue.count)
            finally:
                conn.close()
            up.add_metric([], 1)
        except Exception as exc:  # Redis down: say so, keep the other metrics
            log.warning("metrics: cannot read the RQ queues: %s", type(exc).__name__)
            up.add_metric([], 0)
        yield depth
        yield up


def _merged(family: CounterMetricFamily) -> CounterMetricFamily:
    """Sum samples with the same labels (one connector has several kind/status groups)."""
    totals: dict[tuple[str, ...], float] = {}
    for sample in family.samples:
        key = tuple(sample.labels.values())
        totals[key] = totals.get(key, 0.0) + sample.value
    out = CounterMetricFamily(family.name, family.documentation, labels=["connector"])
    for key, value in totals.items():
        out.add_metric(list(key), value)
    return out


def build_registry(rt: Runtime) -> CollectorRegistry:
    """A registry of its own per app (the global one would mix apps and processes)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(rt))
    return registry


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of qloop's state."""
    registry: CollectorRegistry = request.app.state.metrics
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
