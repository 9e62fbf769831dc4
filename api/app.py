"""The HTTP API (SPEC §8): ``create_app(config)`` builds the FastAPI application.

Typical use (``qloop serve`` does this)::

    app = create_app("qloop.yaml")
    uvicorn.run(app, host="127.0.0.1", port=8000)

The app opens one runtime (store, policies, connectors) for the process and
closes it on shutdown. Every error is a problem detail (:mod:`api.problems`);
every route but health, readiness, metrics and webhooks needs a bearer
token (:mod:`api.auth`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import connectors  # noqa: F401  registers the built-in connector types
from api import problems, web
from api.auth import TokenStore
from api.guards import RequestGuard
from api.routes import (
    campaigns,
    complaints,
    evidence,
    exports,
    health,
    incidents,
    metrics,
    nonconformities,
    reports,
    review,
    sources,
    webhooks,
)
from api.routes.sync_runner import SyncRunner
from api.token_use import TokenUse
from core.conf import AppConfig, load_config
from core.logs import install_masking
from core.runtime import Runtime, open_runtime
from core.timeutil import utcnow

TITLE = "qloop"
DESCRIPTION = (
    "Closes the service-quality loop between ITSM tools and phone/survey services: "
    "sync status, incidents, callbacks, answers, review queue, nonconformities, "
    "compliance exports and monthly reports. Errors are RFC 9457 problem details."
)
ROUTERS = (
    health,
    metrics,
    sources,
    webhooks,
    incidents,
    review,
    nonconformities,
    exports,
    evidence,
    reports,
    campaigns,
    complaints,
)
GUARD_RESPONSES = {
    "400": "Bad request (a NUL character in the path or query…)",
    "413": "Request body too large",
}
"""What :class:`api.guards.RequestGuard` may answer on any route, before the route runs."""
SHUTDOWN_WAIT_S = 30.0
"""How long shutdown waits for embedded syncs still running."""


def create_app(
    config: str | Path | AppConfig,
    *,
    runtime: Runtime | None = None,
    clock: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> FastAPI:
    """Build the API for a config file (or a loaded config).

    Args:
        config: The YAML file's path, or its :class:`AppConfig`.
        runtime: A runtime to serve (tests share theirs); the app then leaves
            closing it to the caller. Default: one opened here, closed on shutdown.
        clock: Aware-UTC "now" of the runtime opened here.
        sleep: How the runtime opened here waits between retries.

    Returns:
        The FastAPI application.

    Raises:
        ConfigError: The configuration (or its ``api`` section) is invalid.
    """
    install_masking()  # no secret, phone or e-mail in any log line, whoever serves the app
    cfg = config if isinstance(config, AppConfig) else load_config(Path(config))
    tokens = TokenStore(cfg.api.tokens, channels=cfg.channels)
    owned = runtime is None
    rt = runtime if runtime is not None else open_runtime(cfg, clock=clock, sleep=sleep)
    syncs = SyncRunner(rt)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        syncs.wait_all(SHUTDOWN_WAIT_S)
        if owned:
            rt.close()

    app = FastAPI(title=TITLE, description=DESCRIPTION, version=_version(), lifespan=lifespan)
    app.state.rt = rt
    app.state.tokens = tokens
    app.state.token_use = TokenUse()
    app.state.syncs = syncs
    app.state.metrics = metrics.build_registry(rt)
    app.add_middleware(webhooks.WebhookIntake)  # first: inside the guard and the catch-all
    problems.install(app)
    app.add_middleware(RequestGuard)
    for module in ROUTERS:
        app.include_router(module.router)
    web.install(app, cfg, tokens, app.version)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qloop")
    except PackageNotFoundError:
        return "0.0.0"


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: error responses as problem details, bearer scheme declared."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (problems.Problem, problems.FieldProblem):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        body.pop("$defs", None)
        schemas[model.__name__] = body
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for url, path in schema.get("paths", {}).items():
        for op in path.values():
            if url.startswith("/webhooks/"):
                op["security"] = [{}, *op.get("security", [])]  # signed, token optional
            responses = op.setdefault("responses", {})
            for status, text in GUARD_RESPONSES.items():  # api.guards answers these anywhere
                responses.setdefault(status, {"description": text})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400 and status != "503":
                    response["content"] = problems.problem_schema_ref()
    app.openapi_schema = schema
    return schema
