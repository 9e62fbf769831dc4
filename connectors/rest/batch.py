"""A configured call that reads many tickets at once: ``{refs}`` in, records out, every page.

Shared by ``ticket.comments_many`` (:mod:`.notes`) and ``ticket.status_many``
(:mod:`.tickets`): the call's ``{refs}`` is up to ``max_refs`` ticket ids
joined by ``separator``; its answer's records (at ``records``) are read page
by page with the block's own ``paginator`` when it has one (``in: body``: the
paging values fill the call's placeholders), a next-page URL the tool gives
being sent as it is. A failed call raises: the caller reads each ticket with
its single call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from connectors.http import HttpService
from connectors.kit.paging import LoopGuard, PageRequest, Paginator, build_paginator
from connectors.kit.stream import paginate
from connectors.rest.calls import Call, answer, records_at

_NO_PAGING = {"type": "next_url", "url_path": "__none__"}


class BatchCall:
    """One ``*_many`` block: its call, paginator, ``max_refs`` and ``separator``."""

    def __init__(
        self,
        http: HttpService,
        spec: Mapping[str, Any],
        where: str,
        errors: Mapping[str, Any] | None = None,
    ) -> None:
        self.http, self.errors = http, errors
        self.spec = dict(spec)
        self.call = Call.of(self.spec, where)
        self.where = self.call.where
        paging = dict(self.spec.get("paginator") or _NO_PAGING)
        self.paginator: Paginator = build_paginator(paging, f"{where}.paginator")
        self.paging_in_body = paging.get("in") == "body"
        self.size = int(self.spec.get("max_refs") or 50)

    def chunks(self, refs: Sequence[str]) -> Iterator[list[str]]:
        """``refs`` once each, in order, ``max_refs`` at a time."""
        wanted = list(dict.fromkeys(refs))
        for start in range(0, len(wanted), self.size):
            yield wanted[start : start + self.size]

    def _send(self, values: dict[str, Any], request: PageRequest) -> httpx.Response:
        if request.path != self.call.path:  # a next-page URL the tool gave: as it is
            url, params = request.target()
            return self.http.request(self.call.method, url, params=params, idempotent=True)
        paging = dict(request.params)
        if self.paging_in_body:
            return self.call.send(self.http, {**values, **paging}, idempotent=True)
        return self.call.send(self.http, values, extra_params=paging, idempotent=True)

    def records(self, refs: list[str]) -> Iterator[dict[str, Any]]:
        """Every record the call answers for ``refs`` (one chunk), page by page."""
        values = {"refs": str(self.spec.get("separator") or ",").join(refs)}
        path = str(self.spec.get("records") or "$")

        def page_of(response: httpx.Response) -> list[dict[str, Any]]:
            doc = answer(self.http, response, self.call, self.errors)
            return records_at(doc, path, self.where)

        guard = LoopGuard(self.where)
        first = PageRequest(self.call.path)
        for page in paginate(
            lambda req: self._send(values, req), first, self.paginator, page_of, guard
        ):
            yield from page
