"""A pulled batch as compact values for the pipe of :mod:`connectors.kit.child`.

Pickling a :class:`~core.records.PulledBatch` as it is costs the reading
process more than converting the page did (each record, contact, status
change and category rebuilt through pickle's generic object protocol, and
every raw payload's dicts one by one). :func:`pack` writes each record as a
plain tuple (instants as they are, the category by value, the status
changes as tuples), the page's SLA summaries as one orjson document and
each raw payload as its own orjson text; :func:`unpack` builds equal
records from them. A payload comes back as a :class:`~core.jsontext.JsonText`
(a read-only mapping over that text, equal to the dict): the storing
process writes the text into the ``raw`` column as it is, never decoding
the payload nor encoding it again (the same text ``json_text`` writes).

Equal, and stored the same: a record of another shape (a subclass, a
history that is not a tuple of :class:`StatusChange`) travels as itself,
and a page whose SLA summaries or raw payloads hold anything but JSON's own
types (an instant, a subclass, a key that is not a string, an integer
beyond 64 bits) keeps its dicts, pickled. A JSON payload comes back as
JSON decodes it (lists where it held lists, dicts where dicts), which is
what the store writes either way.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.jsontext import JsonText
from core.records import Category, Contact, IncidentRecord, PulledBatch, StatusChange

_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
_STRICT |= orjson.OPT_PASSTHROUGH_DATACLASS
"""Without a ``default``, orjson then refuses every value that is not JSON's own type."""
_CATEGORY = {c.value: c for c in Category}
_FIELDS = len(IncidentRecord.__dataclass_fields__)
_new = object.__new__


def pack(batch: PulledBatch) -> tuple[Any, ...]:
    """``batch`` as plain values (module docstring)."""
    rows: list[Any] = []
    slas: list[Any] = []
    raws: list[Any] = []
    for rec in batch.records:
        row = _row(rec)
        if row is None:
            rows.append(rec)
            continue
        rows.append(row)
        slas.append(rec.source_sla)
        raws.append(rec.raw)
    try:
        sla_blob: Any = orjson.dumps(slas, option=_STRICT)
        raw_texts: list[Any] = [orjson.dumps(raw, option=_STRICT) for raw in raws]
    except TypeError:  # orjson.JSONEncodeError: not JSON's own types, kept as they are
        sla_blob, raw_texts = slas, raws
    return (rows, sla_blob, raw_texts, batch.cursor, tuple(batch.rejected), batch.skipped_own)


def unpack(packed: tuple[Any, ...]) -> PulledBatch:
    """The batch :func:`pack` was given (raw payloads sent as text kept as :class:`JsonText`)."""
    rows, sla_blob, raw_texts, cursor, rejected, skipped_own = packed
    slas = orjson.loads(sla_blob) if isinstance(sla_blob, bytes) else sla_blob
    records: list[IncidentRecord] = []
    i = 0
    for row in rows:
        if type(row) is not tuple:
            records.append(row)
            continue
        raw = raw_texts[i]
        records.append(_record(row, slas[i], JsonText(raw) if type(raw) is bytes else raw))
        i += 1
    return PulledBatch(records, cursor, list(rejected), skipped_own)


def _row(rec: IncidentRecord) -> tuple[Any, ...] | None:
    """``rec`` as a tuple, or None when it is not of the shape :func:`_record` rebuilds."""
    contact, history = rec.contact, rec.history
    if (
        type(rec) is not IncidentRecord
        or len(rec.__dict__) != _FIELDS
        or type(contact) is not Contact
        or type(history) is not tuple
        or type(rec.category) is not Category
        or type(rec.source_sla) is not dict
        or type(rec.raw) is not dict
    ):
        return None
    changes = []
    for h in history:
        if type(h) is not StatusChange or type(h.category) is not Category:
            return None
        changes.append((h.at, h.category.value, h.status))
    return (
        rec.external_id,
        rec.key,
        rec.title,
        rec.priority,
        rec.status,
        rec.category.value,
        rec.created_at,
        rec.updated_at,
        changes,
        rec.service,
        rec.customer,
        contact.name,
        contact.phone,
        contact.email,
        rec.first_response_at,
        rec.resolved_at,
        rec.closed_at,
    )


def _record(row: tuple[Any, ...], sla: Any, raw: Any) -> IncidentRecord:
    (ext, key, title, priority, status, category, created, updated, changes, service,
     customer, name, phone, email, first_response, resolved, closed) = row  # fmt: skip
    history = []
    for at, cat, st in changes:
        change = _new(StatusChange)
        change.__dict__.update(at=at, category=_CATEGORY[cat], status=st)
        history.append(change)
    contact = _new(Contact)
    contact.__dict__.update(name=name, phone=phone, email=email)
    record = _new(IncidentRecord)
    record.__dict__.update(
        external_id=ext,
        key=key,
        title=title,
        priority=priority,
        status=status,
        category=_CATEGORY[category],
        created_at=created,
        updated_at=updated,
        history=tuple(history),
        service=service,
        customer=customer,
        contact=contact,
        first_response_at=first_response,
        resolved_at=resolved,
        closed_at=closed,
        source_sla=sla,
        raw=raw,
    )
    return record
