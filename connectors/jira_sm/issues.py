"""One Jira issue → the raw dict the mapping reads → an :class:`IncidentRecord`.

The raw dict keeps what the search returned plus what needs more calls::

    {"id": "10482", "key": "SUP-1287", "fields": {...the requested fields...},
     "history": [{"at": "2026-03-03T09:20:11.000+0100", "status": "In Progress",
                  "from": "Waiting for support"}, ...],          # every status change
     "contact": {"name": ..., "email": ..., "phone": ...},
     "sla": {"time_to_resolution": {"name", "met", "breached", "goal_ms",
                                    "elapsed_ms", "cycles": [...], "ongoing": {...}}}}

The status history comes from ``expand=changelog``; when Jira truncated it
(``total`` > number of histories) the whole changelog is read from
``/issue/{key}/changelog``. SLA cycles come from the search page itself:
JSM's SLA fields (custom fields of type :data:`SLA_FIELD_TYPES`, found once
per sync through ``GET /rest/api/3/field``) hold the same metric objects
(``completedCycles``, ``ongoingCycle``) as the JSM request endpoint
``/rest/servicedeskapi/request/{key}/sla``, which is only the fallback (the
fields could not be found, or the issue came back without them). The SLA
fields are taken out of ``fields``: an ongoing cycle's elapsed time changes
at every read and would make every pull look like a change.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Any

from connectors.jira_sm.client import JiraClient
from core.errors import InputError
from core.mapping import Mapper
from core.records import IncidentRecord

SLA_FIELD_TYPES = ("com.atlassian.servicedesk:sd-sla-field", "com.atlassian.servicedesk:sla-field")
"""``schema.custom`` of JSM's SLA fields in ``GET /rest/api/3/field`` (Cloud documents the
first; the second is accepted as well)."""
ALWAYS = ("created", "updated", "status", "labels")
"""Fields read whatever the mapping says (the cursor, the history, own-ticket labels)."""


def mapped_fields(mapping: Mapping[str, Any], contact: str) -> list[str]:
    """The Jira field ids the mapping reads (``fields.<id>...`` paths), plus what pulls need."""
    found: list[str] = list(ALWAYS)

    def walk(spec: Any) -> None:
        if isinstance(spec, str):
            parts = spec.split(".")
            if len(parts) > 1 and parts[0] == "fields" and parts[1] not in found:
                found.append(parts[1])
        elif isinstance(spec, list):
            for item in spec:
                walk(item)
        elif isinstance(spec, Mapping) and "const" not in spec:
            for item in spec.values():
                walk(item)

    walk(mapping.get("record") or {})
    walk(mapping.get("source_sla") or {})
    for extra in ("reporter", contact if contact.startswith("customfield_") else None):
        if extra and extra not in found:
            found.append(extra)
    return found


def sla_field_ids(fields: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The ids of the SLA fields among a site's fields (``GET /rest/api/3/field``)."""
    found = []
    for f in fields:
        schema = f.get("schema") or {}
        if isinstance(schema, Mapping) and schema.get("custom") in SLA_FIELD_TYPES and f.get("id"):
            found.append(str(f["id"]))
    return tuple(found)


def parse_updated(issue: Mapping[str, Any]) -> datetime:
    """``fields.updated`` of a search result (``2026-03-03T15:05:41.300+0100``).

    Raises:
        InputError: it is missing or not an instant (names the issue).
    """
    text = (issue.get("fields") or {}).get("updated")
    try:
        value = datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        value = None
    if value is None or value.tzinfo is None:
        key = issue.get("key") or issue.get("id")
        msg = f"record {key}: updated at 'fields.updated': bad instant {text!r}"
        raise InputError(msg, record=str(issue.get("id")), field="updated_at")
    return value


def status_history(histories: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The status changes of a changelog, oldest first."""
    out = []
    for h in histories:
        for item in h.get("items") or []:
            if item.get("fieldId") == "status" or item.get("field") == "status":
                out.append(
                    {
                        "at": h.get("created"),
                        "status": item.get("toString"),
                        "from": item.get("fromString"),
                    }
                )
    keys = [str(e["at"]) for e in out]
    if all(map(operator.le, keys, keys[1:])):  # Jira lists them oldest first: keep them
        return out
    return [out[i] for i in sorted(range(len(out)), key=keys.__getitem__)]  # stable, as given


@lru_cache(maxsize=256)
def _slug(name: str) -> str:
    """An SLA's name as a key (``Time to resolution`` → ``time_to_resolution``).

    Remembered per name: a site has a handful of SLA names, read on every
    issue of every page (up to :data:`_SLUGS_KEPT` of them kept).
    """
    slug = _SLUGS.get(name)
    if slug is None:
        slug = re.sub(r"[^0-9a-z]+", "_", name.casefold()).strip("_") or "sla"
        if len(_SLUGS) < _SLUGS_KEPT:
            _SLUGS[name] = slug
    return slug


_SLUGS: dict[str, str] = {}
_SLUGS_KEPT = 1024


def _ms(node: Any) -> int | None:
    """``epochMillis`` of a JSM date, ``millis`` of a duration (None: neither)."""
    if type(node) is not dict and not isinstance(node, dict):  # the exact type first: cheaper
        return None
    value = node.get("epochMillis")
    if type(value) is not int:
        value = node.get("millis")
    return value if type(value) is int else None


def sla_summary(metrics: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per SLA name: met/breached, goal and elapsed of each cycle (stable between reads).

    A breach in any cycle, completed or ongoing, is a breach (SPEC §11): a
    reopened request whose first cycle breached stays breached even when a
    later cycle is met, and ``met`` is the negation of ``breached`` once a
    verdict exists. An ongoing cycle not (yet) breached leaves ``met`` None
    (not decided yet); its elapsed time is left out because it changes with
    every read.
    """
    out: dict[str, Any] = {}
    for metric in metrics:
        name = str(metric.get("name") or metric.get("id") or "sla")
        cycles = []
        breached = False
        for c in metric.get("completedCycles") or []:  # one pass: cycles and any breach
            cycle_breached = bool(c.get("breached"))
            breached = breached or cycle_breached
            cycles.append(
                {
                    "start": _ms(c.get("startTime")),
                    "stop": _ms(c.get("stopTime")),
                    "breached": cycle_breached,
                    "goal_ms": _ms(c.get("goalDuration")),
                    "elapsed_ms": _ms(c.get("elapsedTime")),
                }
            )
        ongoing_raw = metric.get("ongoingCycle")
        ongoing = None
        if type(ongoing_raw) is dict or isinstance(ongoing_raw, Mapping):
            ongoing = {
                "start": _ms(ongoing_raw.get("startTime")),
                "breach_at": _ms(ongoing_raw.get("breachTime")),
                "breached": bool(ongoing_raw.get("breached")),
                "paused": bool(ongoing_raw.get("paused")),
                "goal_ms": _ms(ongoing_raw.get("goalDuration")),
            }
        breached = breached or bool(ongoing and ongoing["breached"])
        met: bool | None
        if breached:
            met = False
        elif ongoing is not None or not cycles:
            met = None  # still running (or never started): no verdict yet
        else:
            met = True
        last = ongoing or (cycles[-1] if cycles else {})
        out[_slug(name)] = {
            "name": name,
            "met": met,
            "breached": breached,
            "goal_ms": last.get("goal_ms"),
            "elapsed_ms": cycles[-1]["elapsed_ms"] if cycles and ongoing is None else None,
            "cycles": cycles,
            "ongoing": ongoing,
        }
    return out


@dataclass(frozen=True)
class IssueReader:
    """Builds raw dicts (with the extra calls they need) and maps them to records."""

    client: JiraClient
    mapping: Mapping[str, Any]
    contact: str = "reporter"
    sla: bool = True
    workers: int = 4
    sla_fields: tuple[str, ...] | None = None
    """This sync's SLA field ids (None: unknown, read each issue's SLA endpoint)."""

    @cached_property
    def mapper(self) -> Mapper:
        """The mapping prepared once per reader, on first use (not once per issue)."""
        return Mapper(self.mapping)

    def sla_metrics(self, key: str, fields: dict[str, Any]) -> Sequence[Mapping[str, Any]]:
        """The SLA metrics of an issue: from its SLA fields (taken out of ``fields``) when
        the search returned them, else from the JSM request endpoint."""
        ids = self.sla_fields or ()
        if ids and not fields.keys().isdisjoint(ids):
            values = [fields.pop(f, None) for f in ids]
            return [v for v in values if type(v) is dict or isinstance(v, Mapping)]
        return self.client.sla(key)

    def raw(self, issue: Mapping[str, Any]) -> dict[str, Any]:
        """The raw dict of one search result (module docstring)."""
        key = str(issue.get("key"))
        fields = dict(issue.get("fields") or {})
        metrics = self.sla_metrics(key, fields) if self.sla else None
        changelog = issue.get("changelog") or {}
        histories = changelog.get("histories") or []
        if _cut(changelog):
            histories = list(self.client.changelog(key))
        reporter = fields.get("reporter") or {}
        contact = {
            "name": reporter.get("displayName"),
            "email": reporter.get("emailAddress"),
            "phone": None,
        }
        if self.contact == "participants":
            for person in self.client.participants(key):
                if person.get("emailAddress"):
                    contact = {
                        "name": person.get("displayName"),
                        "email": person.get("emailAddress"),
                        "phone": None,
                    }
                    break
        elif self.contact.startswith("customfield_"):
            phone = fields.get(self.contact)
            if isinstance(phone, Mapping):
                phone = phone.get("value") or phone.get("phone")
            contact["phone"] = phone
        raw: dict[str, Any] = {
            "id": str(issue.get("id")),
            "key": key,
            "fields": fields,
            "history": status_history(histories),
            "contact": contact,
        }
        if metrics is not None:
            raw["sla"] = sla_summary(metrics)
        return raw

    def record(self, issue: Mapping[str, Any]) -> IncidentRecord:
        return self.mapper.map(self.raw(issue))

    def records(self, issues: Sequence[Mapping[str, Any]]) -> list[IncidentRecord | InputError]:
        """Records of a page, in page order; a record that fails mapping is its InputError.

        The per-issue calls run on up to ``workers`` threads; connector errors
        are raised (the page is then read again on the next attempt).
        """

        def one(issue: Mapping[str, Any]) -> IncidentRecord | InputError:
            try:
                return self.record(issue)
            except InputError as exc:
                return exc

        calling = [i for i in issues if self.needs_call(i)]
        if self.workers <= 1 or len(calling) <= 1:
            return [one(i) for i in issues]
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="jira") as pool:
            return list(pool.map(one, issues))

    def needs_call(self, issue: Mapping[str, Any]) -> bool:
        """Whether an issue of a search page needs a request of its own (a cut changelog,
        SLA cycles not in the page, participants): only then is a page read on threads."""
        if self.contact == "participants" or _cut(issue.get("changelog") or {}):
            return True
        if not self.sla:
            return False
        fields = issue.get("fields") or {}
        return fields.keys().isdisjoint(self.sla_fields or ())


def _cut(changelog: Mapping[str, Any]) -> bool:
    """Whether an expanded changelog is missing (not expanded) or truncated."""
    total = changelog.get("total")
    histories = changelog.get("histories") or []
    return not changelog or (isinstance(total, int) and total > len(histories))
