"""The QA web page (``/qa``): server-rendered pages for the quality department.

:func:`install` adds its routes, its stylesheet and its session handling to
the API's app. See :mod:`api.web.pages` for what it shows and
:mod:`api.web.session` for how visitors sign in.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.auth import TokenStore
from api.web import i18n, pages
from api.web.ended import StoredEndedSessions
from api.web.render import Renderer
from api.web.session import SessionCodec
from core.conf import AppConfig

STATIC = Path(__file__).with_name("static")


def install(app: FastAPI, cfg: AppConfig, tokens: TokenStore, version: str) -> None:
    """Serve the QA web page from ``app`` (whose ``state.rt`` is set)."""
    i18n.catalogue()  # a missing label fails at start-up
    ended = StoredEndedSessions(app.state.rt)
    app.state.web_sessions = SessionCodec(cfg.api.session_secret, tokens, ended)
    app.state.web_language = i18n.default_language(cfg)
    app.state.web_renderer = Renderer(timezone=cfg.timezone, version=version)
    app.add_exception_handler(pages.SignInFirst, pages.signin_redirect)
    app.include_router(pages.router)
    app.mount("/qa/static", StaticFiles(directory=STATIC), name="qa-static")
