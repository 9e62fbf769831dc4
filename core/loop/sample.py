"""Survey sampling (R3): once a month has ended, draw its stratified sample; top up later.

The population is the month's resolved, not-cancelled, tracked incidents
under the policy (by their final resolution, in the policy calendar's
zone). Each stratum (e.g. customer × service) gets round-half-up(rate ×
size), at least one, reproducibly from the seed. Each picked incident is
invited through the first survey channel that can reach its customer; one
reachable by none is recorded as ``not_surveyable``, never silently skipped.

Top-up draws (SPEC §10): incidents that reach a month after its sample was
drawn (a new or fixed source, a resync, a late sync) are drawn later, over
those newcomers only, with the same rule: draw 0 is the month's first,
then 1, 2, …. Each draw records its population per stratum (``members``),
so every incident is considered exactly once per month. Draw ``n`` ≥ 1 is
seeded with ``<seed>/topup-<n>``. A draw stored before members were
recorded counts as having considered the month's incidents first stored
(``ingested_at``) before it was drawn. A month is looked at again only when
one of its records was evaluated after its last draw.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, defer

from core.compliance import CallbackVerdict
from core.compliance.policy import stratum_sample_size
from core.compliance.sampling import stratum_picks
from core.loop._bulk import chunks, insert_returning_ids, insert_rows
from core.loop.common import StepResult
from core.loop.outbox import incident_contact, message_payload, new_token, outbox_row
from core.runtime import Runtime
from core.store.models import ComplianceRecord, Incident, OutboxItem, SampleRun, SurveyInvitation
from core.timeutil import month_bounds

_STREAM_ROWS = 5000  # rows fetched at a time while the population streams in


def _stratum_of(
    keys: tuple[str, ...], columns: list[str], values: tuple[Any, ...]
) -> tuple[str, ...]:
    """An incident's stratum from its selected ``stratify_by`` columns; ``-`` when empty.

    ``values`` holds the values of the keys that are columns, in order; a key
    that names no column counts as empty.
    """
    it = iter(values)
    return tuple(str((next(it) if k in columns else None) or "-") for k in keys)


def survey_key(inc: Incident) -> str:
    return f"survey:{inc.source}:{inc.external_id}"


def draw_seed(seed: str, draw: int) -> str:
    """The seed of draw ``draw`` of a month: the policy's for the first, derived for top-ups."""
    return seed if draw == 0 else f"{seed}/topup-{draw}"


def sample_surveys(rt: Runtime) -> StepResult:
    """Draw the sample of every ended month not sampled yet, and top up months with newcomers."""
    result = StepResult("sample")
    now = rt.now()
    for name, pcfg in rt.config.policies.items():
        if pcfg.sample is None or not pcfg.survey_channels:
            continue
        policy = rt.policy(name)
        sources = [s for s, cfg in rt.config.sources.items() if cfg.policy == name]
        with rt.db.session() as s:
            last_draw = dict(
                s.execute(
                    select(SampleRun.month, func.max(SampleRun.created_at))
                    .where(SampleRun.policy == name)
                    .group_by(SampleRun.month)
                ).all()
            )
            evaluated = dict(
                s.execute(
                    select(ComplianceRecord.month, func.max(ComplianceRecord.evaluated_at))
                    .where(
                        ComplianceRecord.policy == name,
                        ComplianceRecord.policy_version == policy.version,
                        ComplianceRecord.month.is_not(None),
                    )
                    .group_by(ComplianceRecord.month)
                ).all()
            )
        for month in sorted(m for m in evaluated if m):
            if month_bounds(month, policy.calendar.tz)[1] > now:
                continue  # the month is still running
            drawn_at = last_draw.get(month)
            if drawn_at is not None and not evaluated[month] > drawn_at:
                continue  # nothing of the month changed since its last draw
            _sample_month(rt, name, month, sources, result)
    return result


def _considered(runs: Sequence[SampleRun]) -> tuple[set[int], datetime | None]:
    """What earlier draws of the month considered (their populations).

    The ids their members list, and the latest time a draw stored before
    members were recorded was made (it considered every incident of the month
    stored by then: those ``ingested_at`` at or before it), None without one.
    """
    seen: set[int] = set()
    legacy: datetime | None = None
    for run in runs:
        strata = run.strata or []
        if strata and all("members" in st for st in strata):
            for st in strata:
                seen.update(int(m) for m in st["members"])
        elif legacy is None or run.created_at > legacy:
            legacy = run.created_at
    return seen, legacy


def _population(
    s: Session,
    policy_name: str,
    month: str,
    sources: list[str],
    runs: Sequence[SampleRun],
    rt: Runtime,
) -> dict[tuple[str, ...], array[int]]:
    """The month's newcomers (not considered by an earlier draw): their ids by stratum.

    Streamed from the store in one pass into an array of ids per stratum (8
    bytes an incident; each stratum's key tuple is shared by its members), so
    a month of any size costs its ids, not a tuple and dict entries per
    incident.
    """
    pcfg = rt.config.policies[policy_name]
    assert pcfg.sample is not None
    policy = rt.policy(policy_name)
    keys = pcfg.sample.stratify_by
    columns = Incident.__mapper__.column_attrs.keys()
    key_columns = [getattr(Incident, k) for k in keys if k in columns]
    considered, legacy_at = _considered(runs)
    # ingested_at only matters after a draw stored before members were recorded: not
    # read (nor converted per row) otherwise
    cutoff = [Incident.ingested_at] if legacy_at is not None else []
    first_key = 1 + len(cutoff)
    query = (
        select(Incident.id, *cutoff, *key_columns)
        .join(ComplianceRecord, ComplianceRecord.incident_id == Incident.id)
        .where(
            ComplianceRecord.policy == policy_name,
            ComplianceRecord.policy_version == policy.version,
            ComplianceRecord.month == month,
            ComplianceRecord.cancelled.is_(False),
            Incident.source.in_(sources),
            # §11: nobody is surveyed about a resolution due before tracking start
            or_(
                ComplianceRecord.callback_verdict.is_(None),
                ComplianceRecord.callback_verdict != CallbackVerdict.UNTRACKED.value,
            ),
        )
        .execution_options(stream_results=True, max_row_buffer=_STREAM_ROWS)
    )
    # the interned stratum of each distinct tuple of column values (few: the strata)
    strata: dict[tuple[Any, ...], tuple[str, ...]] = {}
    members: dict[tuple[str, ...], array[int]] = {}
    for part in s.connection().execute(query).partitions(_STREAM_ROWS):
        for row in part:
            inc_id = row[0]
            if inc_id in considered or (legacy_at is not None and row[1] <= legacy_at):
                continue
            values = tuple(row[first_key:])
            stratum = strata.get(values)
            if stratum is None:
                stratum = strata[values] = _stratum_of(keys, columns, values)
            ids = members.get(stratum)
            if ids is None:
                ids = members[stratum] = array("q")
            ids.append(inc_id)
    return members


def _resolved_at(
    s: Session, policy_name: str, version: str, month: str, ids: list[int]
) -> dict[int, datetime]:
    """The resolution time of the month's records of ``ids`` (the picked incidents only)."""
    found: dict[int, datetime] = {}
    for chunk in chunks(ids):
        for inc_id, at in s.execute(
            select(ComplianceRecord.incident_id, ComplianceRecord.resolved_at).where(
                ComplianceRecord.policy == policy_name,
                ComplianceRecord.policy_version == version,
                ComplianceRecord.month == month,
                ComplianceRecord.incident_id.in_(chunk),
            )
        ):
            if at is not None:
                found[inc_id] = at
    return found


def _sample_month(
    rt: Runtime, policy_name: str, month: str, sources: list[str], result: StepResult
) -> None:
    pcfg = rt.config.policies[policy_name]
    assert pcfg.sample is not None
    now = rt.now()
    rate = pcfg.sample.rate
    with rt.db.session() as s:
        runs = list(
            s.scalars(
                select(SampleRun)
                .where(SampleRun.policy == policy_name, SampleRun.month == month)
                .order_by(SampleRun.draw)
            )
        )
        members = _population(s, policy_name, month, sources, runs, rt)
        population = sum(len(ids) for ids in members.values())
        if runs and not population:
            return  # no newcomer since the last draw
        draw = runs[-1].draw + 1 if runs else 0
        seed = draw_seed(pcfg.sample.seed, draw)
        stratum_sample_size(rate, 0)  # checks the rate even when no stratum is drawn
        # stratum by stratum, the rule of ``stratified_sample`` over (str(id), stratum)
        picked_strata: dict[int, tuple[str, ...]] = {}
        reports: list[dict[str, Any]] = []
        for stratum in sorted(members):
            stratum_ids = members[stratum]
            chosen = stratum_picks([str(i) for i in stratum_ids], rate, seed)
            for member in chosen:
                picked_strata[int(member)] = stratum
            reports.append(
                {
                    "stratum": list(stratum),
                    "size": len(stratum_ids),
                    "picked": len(chosen),
                    "achieved_rate": len(chosen) / len(stratum_ids),
                    "members": sorted(stratum_ids),
                }
            )
            members[stratum] = array("q")  # its ids are in the report now
        run = SampleRun(
            policy=policy_name,
            month=month,
            draw=draw,
            seed=seed,
            rate=rate,
            population=population,
            picked=len(picked_strata),
            strata=reports,
            created_at=now,
        )
        s.add(run)
        s.flush()
        # its members are stored: not kept while the invitations are made
        s.expire(run, ["strata"])
        del reports
        picked = sorted(picked_strata)
        invited: set[int] = set()
        for chunk in chunks(picked):
            invited.update(
                s.scalars(
                    select(SurveyInvitation.incident_id).where(
                        SurveyInvitation.incident_id.in_(chunk)
                    )
                )
            )
        wanted = [inc_id for inc_id in picked if inc_id not in invited]
        for chunk in chunks(wanted):
            _invite(rt, s, run, chunk, picked_strata, result)
        result.counts["sampled_months" if draw == 0 else "top_up_draws"] += 1


def _invite(
    rt: Runtime,
    s: Session,
    run: SampleRun,
    wanted: list[int],
    picked_strata: dict[int, tuple[str, ...]],
    result: StepResult,
) -> None:
    """Store the invitations of a chunk of picked incidents and their outbox rows.

    A chunk at a time, so a large sample never holds every picked incident,
    invitation and message at once.
    """
    policy = rt.policy(run.policy)
    resolved_at = _resolved_at(s, run.policy, policy.version, run.month, wanted)
    incidents = {
        inc.id: inc
        for inc in s.scalars(
            select(Incident).options(defer(Incident.raw)).where(Incident.id.in_(wanted))
        )
    }
    invitations: list[dict[str, Any]] = []
    items: list[tuple[str, dict[str, Any]]] = []
    for inc_id in wanted:
        stratum = picked_strata[inc_id]
        row, item = _invitation(rt, incidents[inc_id], resolved_at[inc_id], run, stratum, result)
        invitations.append(row)
        if item is not None:
            items.append((row["correlation_token"], item))
    ids = insert_returning_ids(s, SurveyInvitation, invitations, "correlation_token")
    insert_rows(s, OutboxItem, [{**item, "entity_id": ids[token]} for token, item in items])


def _invitation(
    rt: Runtime,
    inc: Incident,
    resolved_at: datetime,
    run: SampleRun,
    stratum: tuple[str, ...],
    result: StepResult,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The invitation row of a picked incident, and its outbox row (None: not surveyable)."""
    pcfg = rt.config.policies[run.policy]
    contact = incident_contact(inc)
    channel_name = next((c for c in pcfg.survey_channels if rt.channel(c).can_reach(contact)), None)
    token = new_token()
    now = rt.now()
    row = {
        "incident_id": inc.id,
        "sample_run_id": run.id,
        "stratum": " × ".join(stratum),
        "channel": channel_name,
        "correlation_token": token,
        "state": "planned" if channel_name else "not_surveyable",
        "provider_ref": None,
        "created_at": now,
    }
    if channel_name is None:
        result.counts["not_surveyable"] += 1
        return row, None
    key = survey_key(inc)
    payload = message_payload(
        inc, kind="survey", key=key, token=token, resolved_at=resolved_at, due_at=None
    )
    result.counts["invitations"] += 1
    return row, outbox_row(key=key, kind="survey", target=channel_name, payload=payload, now=now)
