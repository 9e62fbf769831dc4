"""Sources and channels: sync status, last cursor, last run and error; trigger a sync."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import Permission, Principal, require
from api.problems import ApiError
from api.routes.common import (
    READ_PROBLEMS,
    Cursor,
    Limit,
    Reader,
    RuntimeDep,
    SessionDep,
    page,
    problems,
    record_audit,
)
from api.routes.schemas import (
    ChannelOut,
    Page,
    RejectedOut,
    SourceOut,
    SyncRunOut,
    SyncStatus,
    SyncTriggered,
)
from api.routes.sync_runner import SyncRunner, enqueue_sync
from core import registry
from core.conf.masking import scrub
from core.loop import rejects
from core.loop.common import collect_state_name, first_sync_run
from core.store.models import RejectedRecord, SourceState, SyncRun

router = APIRouter(tags=["sources"], responses=READ_PROBLEMS)

Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]


def _state(s: Session, name: str) -> tuple[SourceState | None, SyncRun | None]:
    state = s.get(SourceState, name)
    run = s.scalars(
        select(SyncRun).where(SyncRun.connector == name).order_by(SyncRun.id.desc()).limit(1)
    ).first()
    return state, run


def _common(state: SourceState | None, run: SyncRun | None) -> dict[str, object]:
    return {
        "cursor": state.cursor if state else None,
        "last_run_at": state.last_run_at if state else None,
        "last_ok_at": state.last_ok_at if state else None,
        "last_error": scrub(state.last_error) if state else None,
        "last_run": _run_out(run),
    }


def _first_sync(s: Session, name: str) -> SyncRunOut | None:
    """The last run that recorded the tool's count (a first sync)."""
    return _run_out(first_sync_run(s, name))


def _run_out(run: SyncRun | None) -> SyncRunOut | None:
    """A sync run as served: its error masked again (rows stored by older versions were not)."""
    if run is None:
        return None
    return SyncRunOut.model_validate(run).model_copy(update={"error": scrub(run.error)})


@router.get("/sources", response_model=list[SourceOut])
def list_sources(rt: RuntimeDep, s: SessionDep, _: Reader) -> list[SourceOut]:
    """Every configured source with its sync status."""
    out = []
    rejected = rejects.open_counts(s)
    for name, cfg in sorted(rt.config.sources.items()):
        state, run = _state(s, name)
        out.append(
            SourceOut(
                name=name,
                type=cfg.type,
                enabled=cfg.enabled,
                schedule=cfg.schedule,
                policy=cfg.policy,
                rejected_open=rejected.get(name, 0),
                first_sync=_first_sync(s, name),
                **_common(state, run),  # type: ignore[arg-type]
            )
        )
    return out


@router.get("/sources/{name}/rejects", response_model=Page[RejectedOut], responses=problems(404))
def list_rejects(
    name: Name,
    rt: RuntimeDep,
    s: SessionDep,
    _: Annotated[Principal, Depends(require(Permission.CONTACTS))],
    resolved: Annotated[bool, Query(description="Include the resolved ones.")] = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[RejectedOut]:
    """Records of the source that could not be mapped, with the error naming the field.

    The error may quote the record's values, so it needs the right to see
    contact details.
    """
    if name not in rt.config.sources:
        raise ApiError(404, f"unknown source {name!r}")
    query = select(RejectedRecord).where(RejectedRecord.source == name)
    if not resolved:
        query = query.where(RejectedRecord.resolved_at.is_(None))
    rows, nxt = page(s, query, RejectedRecord.id, limit, cursor)
    return Page[RejectedOut](items=[RejectedOut.model_validate(r) for r in rows], next_cursor=nxt)


def _receives_webhooks(type_name: str) -> bool:
    try:
        factory = registry.get("channel", type_name).factory
    except Exception:  # an unregistered type cannot receive anything
        return False
    return callable(getattr(factory, "receive", None))


@router.get("/channels", response_model=list[ChannelOut])
def list_channels(rt: RuntimeDep, s: SessionDep, _: Reader) -> list[ChannelOut]:
    """Every configured channel with its collect status."""
    out = []
    for name, cfg in sorted(rt.config.channels.items()):
        state, run = _state(s, collect_state_name(name))
        out.append(
            ChannelOut(
                name=name,
                type=cfg.type,
                enabled=cfg.enabled,
                schedule=cfg.schedule,
                receives_webhooks=_receives_webhooks(cfg.type),
                **_common(state, run),  # type: ignore[arg-type]
            )
        )
    return out


@router.post(
    "/sources/{name}/sync",
    status_code=202,
    response_model=SyncTriggered,
    responses=problems(404, 409, 502),
)
def trigger_sync(
    name: Name,
    rt: RuntimeDep,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.SYNC))],
) -> SyncTriggered:
    """Start a sync of one source now (queued with Redis, else in this process)."""
    cfg = rt.config.sources.get(name)
    if cfg is None:
        raise ApiError(404, f"unknown source {name!r}")
    if not cfg.enabled:
        raise ApiError(409, f"source {name!r} is disabled (enabled: false)", slug="disabled")
    mode: Literal["queued", "embedded"]
    with rt.db.session() as s:
        if rt.config.redis_url:
            (run_id, running), mode = enqueue_sync(rt, name), "queued"
        else:
            runner: SyncRunner = request.app.state.syncs
            job, running = runner.start(name)
            run_id, mode = job.run_id, "embedded"
        record_audit(s, rt, principal, "sync.trigger", "source", name, mode=mode, run_id=run_id)
    return SyncTriggered(run_id=run_id, source=name, mode=mode, already_running=running)


@router.get(
    "/sources/{name}/sync/{run_id}",
    response_model=SyncStatus,
    responses=problems(404),
)
def sync_status(
    name: Name,
    run_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    request: Request,
    _: Reader,
) -> SyncStatus:
    """How a sync triggered in embedded mode is going (queued syncs: see /sources)."""
    runner: SyncRunner = request.app.state.syncs
    job = runner.get(run_id)
    if job is None or job.source != name:
        raise ApiError(404, f"no sync run {run_id} of source {name!r} in this process")
    return SyncStatus(
        run_id=job.run_id,
        source=job.source,
        status=job.status,  # type: ignore[arg-type]
        started_at=job.started_at,
        finished_at=job.finished_at,
        results=job.results,
        error=scrub(job.error),
    )
