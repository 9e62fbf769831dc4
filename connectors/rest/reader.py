"""Reading incidents: the list call paged by a kit paginator, the history, own tickets.

The list call is sent with ``{since}`` (the cursor's lower bound, or the
configured start on a first sync) written as the ``since`` options say: in
the tool's time zone and format; ``{until}``, when the call has it, is the
upper bound of a window of a windowed first sync (else ``since.open``).
Records are read at ``list.records``; each page gets its history in bulk
when the history call takes ``{ids}``, else with one call per record (a
tool without a bulk form).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from connectors.http import HttpService
from connectors.kit.paging import LoopGuard, PageRequest, Paginator, build_paginator
from connectors.kit.paths import read
from connectors.kit.stream import Raw, paginate
from connectors.rest.calls import Call, answer, records_at
from core.errors import ConfigError, FatalError
from core.timeutil import parse_instant

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def instant_of(value: Any, zone: ZoneInfo) -> datetime:
    """An instant as a tool gives it: epoch seconds or milliseconds (a number), else text
    (ISO 8601; without an offset, in ``zone``).

    Raises:
        InputError, ValueError, OverflowError: it is not an instant.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 100_000_000_000 else value
        return datetime.fromtimestamp(seconds, UTC)
    return parse_instant(str(value), zone)


def format_instant(at: datetime, fmt: str, zone: ZoneInfo) -> str:
    """``at`` as the tool writes it: ``iso`` (UTC, ``Z``), ``epoch``, ``epoch_ms`` or strftime."""
    if fmt == "epoch":
        return str(int(at.timestamp()))
    if fmt == "epoch_ms":
        return str(int(at.timestamp() * 1000))
    if fmt == "iso":
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return at.astimezone(zone).strftime(fmt)


class Reader:
    def __init__(self, http: HttpService, opts: Mapping[str, Any], where: str) -> None:
        self.http, self.where = http, where
        self.errors: Mapping[str, Any] | None = opts.get("errors")
        spec = dict(opts["list"])
        self.list = Call.of(spec, f"{where}.list")
        self.records = str(spec.get("records") or "$")
        paging = dict(spec.get("paginator") or {"type": "next_url", "url_path": "__none__"})
        self.paginator: Paginator = build_paginator(paging, f"{where}.list.paginator")
        self.paging_in_body = paging.get("in") == "body"
        since = dict(spec.get("since") or {})
        self.since_param = since.get("param")
        self.since_format = str(since.get("format") or "iso")
        self.open_end: str | None = since.get("open")
        self.windowed = "until" in self.list.uses()
        try:
            self.zone = ZoneInfo(str(since.get("timezone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            msg = f"{where}.list.since.timezone: unknown time zone {since.get('timezone')!r}"
            raise ConfigError(msg) from None
        history = opts.get("history")
        self.history = Call.of(history, f"{where}.history") if history else None
        self.history_spec = dict(history or {})
        if self.history and "ids" in self.history.uses() and not self.history_spec.get("key"):
            msg = f"{where}.history.key: a history call with {{ids}} needs the row's record key"
            raise ConfigError(msg)

    # -- the list -----------------------------------------------------------------------

    def values(self, since: datetime, until: datetime | None = None) -> dict[str, Any]:
        """``{since}`` and ``{until}`` as the tool writes them (no bound: ``since.open``)."""
        if until is not None:
            end = format_instant(until, self.since_format, self.zone)
        elif self.open_end is not None:
            end = self.open_end
        else:
            end = format_instant(
                datetime.now(UTC) + timedelta(days=1), self.since_format, self.zone
            )
        return {"since": format_instant(since, self.since_format, self.zone), "until": end}

    def _send(self, values: dict[str, Any], request: PageRequest) -> httpx.Response:
        if request.path != self.list.path:  # a next-page URL the tool gave: as it is
            url, params = request.target()
            return self.http.request(self.list.method, url, params=params, idempotent=True)
        paging = dict(request.params)
        extra: dict[str, Any] = {}
        if self.since_param:
            extra[self.since_param] = values["since"]
        if self.paging_in_body:
            values = {**values, **paging}
        else:
            extra.update(paging)
        return self.list.send(self.http, values, extra_params=extra, idempotent=True)

    def page_of(self, response: httpx.Response) -> list[Raw]:
        return records_at(
            answer(self.http, response, self.list, self.errors), self.records, self.list.where
        )

    def pages(self, since: datetime, until: datetime | None = None) -> Iterator[list[Raw]]:
        """Pages of the records updated at or after ``since`` (and before ``until`` when the
        list call takes ``{until}``), as the tool orders them."""
        values = self.values(since, until)
        guard = LoopGuard(self.list.where)
        first = PageRequest(self.list.path)
        yield from paginate(
            lambda req: self._send(values, req), first, self.paginator, self.page_of, guard
        )

    def first_response(self, since: datetime, override: Mapping[str, Any]) -> httpx.Response:
        """The list's first page; ``override`` merges ``params`` and replaces ``json``/``form``."""
        call = Call(
            f"{self.where}.count",
            self.list.path,
            self.list.method,
            {**self.list.params, **dict(override.get("params") or {})},
            override.get("json", self.list.json),
            override.get("form", self.list.form),
        )
        paging = dict(self.paginator.first(PageRequest(self.list.path)).params)
        values = {**self.values(since), **paging}
        extra = {} if self.paging_in_body else paging
        if self.since_param:
            extra[self.since_param] = values["since"]
        query_over = dict(override.get("params") or {})
        return call.send(self.http, values, extra_params={**extra, **query_over}, idempotent=True)

    # -- history ------------------------------------------------------------------------

    def _keep(self, row: Raw) -> bool:
        wanted = self.history_spec.get("where") or {}
        return all(str(read(row, str(p))) == str(v) for p, v in wanted.items())

    def _rows(self, values: dict[str, Any]) -> list[Raw]:
        assert self.history is not None
        response = self.history.send(self.http, values, idempotent=True)
        doc = answer(self.http, response, self.history, self.errors)
        path = str(self.history_spec.get("records") or "$")
        return [r for r in records_at(doc, path, self.history.where) if self._keep(r)]

    def with_history(self, raws: list[Raw], ids: list[str]) -> list[Raw]:
        """Each record with its history rows under ``history.into`` (bulk when {ids})."""
        if self.history is None or not raws:
            return raws
        into = str(self.history_spec.get("into") or "history")
        if "ids" in self.history.uses():
            key = str(self.history_spec["key"])
            found: dict[str, list[Raw]] = {}
            for row in self._rows({"ids": ",".join(ids)}):
                found.setdefault(str(read(row, key)), []).append(row)
            return [{**raw, into: found.get(i, [])} for raw, i in zip(raws, ids, strict=True)]
        return [{**raw, into: self._rows({"id": i})} for raw, i in zip(raws, ids, strict=True)]

    # -- counts -------------------------------------------------------------------------

    @staticmethod
    def count_of(
        response: httpx.Response, path: str | None, header: str | None, pattern: str | None,
        where: str,
    ) -> int:  # fmt: skip
        raw: Any = response.headers.get(header) if header else read(response.json(), path or "$")
        text = "" if raw is None else str(raw)
        if pattern:
            match = re.search(pattern, text)
            text = match.group(1) if match else ""
        if not text.strip().isdigit():
            msg = f"{where}: no count at {header or path!r} in the answer (found {raw!r})"
            raise FatalError(msg)
        return int(text)
