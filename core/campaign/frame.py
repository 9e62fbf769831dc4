"""A campaign's sampling frame: the people with incidents in its window (R3).

Incidents created in the window (its days in the configuration's zone,
both ends included) and not cancelled are grouped into people: two
incidents belong to the same person when they share a normalised e-mail
address or phone number (``core.privacy``), whatever their source, and
the grouping is transitive (A–B by e-mail, B–C by phone: one person).
Incidents with neither are counted apart (``no_contact``), never guessed.

Each person is placed in the stratum of their latest incident in the
window (by creation, then id) and is known by ``person_key``: their
smallest ``email:`` key, else their smallest ``phone:`` key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from core.privacy import email_key, phone_key
from core.store.models import Incident
from core.timeutil import to_utc


@dataclass(frozen=True)
class Person:
    """One person of the frame."""

    key: str
    keys: tuple[str, ...]
    incident: Incident
    """The latest incident in the window: stratum and contact details."""
    incidents: int


def contact_keys(inc: Incident) -> list[str]:
    """``email:…`` and ``phone:…`` keys of an incident's contact."""
    keys = []
    mail = inc.email_key or email_key(inc.contact_email)
    phone = inc.phone_key or phone_key(inc.contact_phone)
    if mail:
        keys.append(f"email:{mail}")
    if phone:
        keys.append(f"phone:{phone}")
    return keys


def window_bounds(first: date, last: date, zone: str) -> tuple[datetime, datetime]:
    """UTC instants [start of ``first``, start of the day after ``last``) in ``zone``."""
    tz = ZoneInfo(zone)
    start = datetime.combine(first, time(0), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz)
    return to_utc(start), to_utc(end)


def window_incidents(s: Session, first: date, last: date, zone: str) -> list[Incident]:
    """The not-cancelled incidents created in the window, oldest first."""
    start, end = window_bounds(first, last, zone)
    return list(
        s.scalars(
            select(Incident)
            .options(defer(Incident.raw))
            .where(
                Incident.created_at >= start,
                Incident.created_at < end,
                Incident.category != "cancelled",
            )
            .order_by(Incident.created_at, Incident.id)
        )
    )


def group_people(incidents: Iterable[Incident]) -> tuple[list[Person], int]:
    """The people of ``incidents`` (sorted by key) and how many incidents had no contact."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    no_contact = 0
    with_keys: list[tuple[Incident, list[str]]] = []
    for inc in incidents:
        keys = contact_keys(inc)
        if not keys:
            no_contact += 1
            continue
        for k in keys:
            parent.setdefault(k, k)
        for k in keys[1:]:
            union(keys[0], k)
        with_keys.append((inc, keys))
    groups: dict[str, tuple[set[str], list[Incident]]] = {}
    for inc, keys in with_keys:
        keyset, incs = groups.setdefault(find(keys[0]), (set(), []))
        keyset.update(keys)
        incs.append(inc)
    people = []
    for keyset, incs in groups.values():
        mails = sorted(k for k in keyset if k.startswith("email:"))
        phones = sorted(k for k in keyset if k.startswith("phone:"))
        latest = max(incs, key=lambda i: (i.created_at, i.id))
        people.append(
            Person(
                key=(mails or phones)[0],
                keys=tuple(mails + phones),
                incident=latest,
                incidents=len(incs),
            )
        )
    people.sort(key=lambda p: p.key)
    return people, no_contact


def stratum_of(inc: Incident, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The stratum of an incident: its values of ``keys`` (``-`` when empty)."""
    return tuple(str(getattr(inc, k, None) or "-") for k in keys)
