"""Liveness and readiness, for load balancers and orchestrators (no token needed)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.routes.common import RuntimeDep
from api.routes.schemas import Health, Readiness
from core.runtime import Runtime

log = logging.getLogger("qloop.api")
router = APIRouter(tags=["health"])

REDIS_TIMEOUT_S = 2.0


@router.get("/health", response_model=Health)
def health() -> Health:
    """The process is alive."""
    return Health(status="ok")


def _check(rt: Runtime) -> Readiness:
    database = "ok"
    try:
        with rt.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; say which kind
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        database = f"unreachable ({type(exc).__name__})"
    redis_state: str | None = None
    if rt.config.redis_url:
        import redis

        try:
            client = redis.Redis.from_url(
                rt.config.redis_url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            try:
                client.ping()
            finally:
                client.close()
            redis_state = "ok"
        except Exception as exc:  # unreachable, refused, bad password: not ready
            log.warning("readiness: redis unreachable: %s", type(exc).__name__)
            redis_state = f"unreachable ({type(exc).__name__})"
    ok = database == "ok" and redis_state in (None, "ok")
    return Readiness(status="ok" if ok else "unavailable", database=database, redis=redis_state)


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is unreachable"}},
)
async def ready(rt: RuntimeDep) -> JSONResponse:
    """The database (and Redis when configured) can be reached."""
    state = await run_in_threadpool(_check, rt)
    return JSONResponse(state.model_dump(), status_code=200 if state.status == "ok" else 503)
