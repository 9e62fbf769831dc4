"""A campaign's results from stored facts: scores per item and stratum, response, comments.

:func:`campaign_results` reads only the store (the campaign, its members,
its answers and the questionnaire stored with it), so the same stored facts
give the same results, and :func:`render_results` the same bytes.

* Scores: each configured item's answers (``CampaignItem.value``): a score
  item's mean with a 95% Student t interval (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n,
  clipped to the item's scale; none for a single answer); a yes/no item's
  share of yes with a 95% Wilson score interval. Overall and per stratum.
* Comparison: the same items of the previous campaign (``previous:``, else
  the latest other campaign launched before this one), under that
  campaign's own stored questionnaire.
* Non-response: per stratum the frame size, invited, answered, response
  rate (answered / invited), coverage (answered / frame size), reminded,
  and who did not answer (count), flagged below ``coverage_target``.
* Comments: the configured comment questions' answers, by stratum, with
  phone numbers and e-mail addresses masked (``masked``, for qa-read).
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.conf.model import CampaignItem
from core.errors import StateError
from core.privacy import mask_pii_text
from core.store.models import Campaign, CampaignAnswer, CampaignMember

METHOD = "t-mean/wilson-95"
Z95 = 1.959963984540054
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
"""Student t 0.975 quantiles for 1..30 degrees of freedom (standard tables)."""
_T975_TAIL = ((40, 2.021), (60, 2.000), (120, 1.980))


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (≥ 1).

    Exact table values to 30; beyond, linear in 1/df between 40, 60, 120 and ∞.
    """
    if df < 1:
        msg = f"t quantile needs at least 1 degree of freedom, got {df}"
        raise ValueError(msg)
    if df <= 30:
        return _T975[df - 1]
    points = [(30, _T975[-1]), *_T975_TAIL, (math.inf, Z95)]
    for (d0, t0), (d1, t1) in itertools.pairwise(points):
        if df <= d1:
            x0, x1, x = 1 / d0, (0.0 if d1 == math.inf else 1 / d1), 1 / df
            return t0 + (t1 - t0) * (x0 - x) / (x0 - x1)
    return Z95


@dataclass(frozen=True)
class Estimate:
    """An item's value over some answers with its 95% interval (None: too few answers)."""

    n: int
    value: float | None
    low: float | None
    high: float | None


def mean_interval(values: list[float]) -> Estimate:
    """Mean with a 95% Student t interval."""
    n = len(values)
    if n == 0:
        return Estimate(0, None, None, None)
    mean = statistics.fmean(values)
    if n == 1:
        return Estimate(1, round(mean, 6), None, None)
    half = t975(n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Estimate(n, round(mean, 6), round(mean - half, 6), round(mean + half, 6))


def wilson_interval(yes: int, n: int) -> Estimate:
    """Share of yes with a 95% Wilson score interval."""
    if n == 0:
        return Estimate(0, None, None, None)
    p = yes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Estimate(
        n, round(p, 6), round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)
    )


@dataclass(frozen=True)
class ItemResult:
    item: str
    question: str
    kind: str
    """``score`` (mean on ``scale``) or ``yes_no`` (share of yes)."""
    scale: tuple[float, float]
    overall: Estimate
    strata: dict[str, Estimate]
    previous: Estimate | None

    @property
    def change(self) -> float | None:
        if self.previous is None or self.previous.value is None or self.overall.value is None:
            return None
        return round(self.overall.value - self.previous.value, 6)


@dataclass(frozen=True)
class StratumResponse:
    stratum: str
    size: int
    invited: int
    answered: int
    reminded: int
    target: float

    @property
    def not_answered(self) -> int:
        return self.invited - self.answered

    @property
    def response_rate(self) -> float | None:
        return self.answered / self.invited if self.invited else None

    @property
    def coverage(self) -> float | None:
        return self.answered / self.size if self.size else None

    @property
    def below_target(self) -> bool:
        rate = self.response_rate
        return self.size > 0 and (rate is None or rate < self.target)


@dataclass(frozen=True)
class Comment:
    stratum: str
    question: str
    submitted_at: str | None
    text: str


@dataclass(frozen=True)
class CampaignResults:
    """A campaign's results report data (see the module docstring)."""

    name: str
    state: str
    window_from: str
    window_to: str
    channel: str
    survey_id: int | None
    as_of: str
    """The latest stored fact (plan, launch, close or collection), UTC ISO."""
    method: str
    masked: bool
    previous: str | None
    items: tuple[ItemResult, ...]
    strata: tuple[StratumResponse, ...]
    comments: tuple[Comment, ...]
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def invited(self) -> int:
        return sum(s.invited for s in self.strata)

    @property
    def answered(self) -> int:
        return sum(s.answered for s in self.strata)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able data (computed properties included)."""
        doc = asdict(self)
        doc["invited"], doc["answered"] = self.invited, self.answered
        for item, row in zip(self.items, doc["items"], strict=True):
            row["change"] = item.change
            row["scale"] = list(item.scale)
        for st, row in zip(self.strata, doc["strata"], strict=True):
            row.update(
                not_answered=st.not_answered,
                response_rate=st.response_rate,
                coverage=st.coverage,
                below_target=st.below_target,
            )
        return doc


def _item(raw: dict[str, Any]) -> CampaignItem:
    scale = raw.get("scale") or [1, 5]
    return CampaignItem(
        name=raw["name"],
        question=raw["question"],
        scale=(float(scale[0]), float(scale[1])),
        values={str(k): float(v) for k, v in (raw.get("values") or {}).items()},
        yes_codes=frozenset(raw.get("yes_codes") or ()),
        no_codes=frozenset(raw.get("no_codes") or ("N",)),
    )


def _estimate(item: CampaignItem, answers: list[dict[str, Any]]) -> Estimate:
    values = [v for v in (item.value(a.get(item.question)) for a in answers) if v is not None]
    if item.is_yes_no:
        return wilson_interval(sum(1 for v in values if v == 1.0), len(values))
    est = mean_interval(values)
    lo, hi = item.scale  # a mean cannot leave the scale: the interval is clipped to it
    return Estimate(
        est.n,
        est.value,
        None if est.low is None else max(lo, est.low),
        None if est.high is None else min(hi, est.high),
    )


def _answers(s: Session, campaign_id: int) -> list[tuple[str, CampaignAnswer]]:
    """(stratum, answer) of the campaign, one per member (their latest response)."""
    latest: dict[int, tuple[str, CampaignAnswer]] = {}
    for answer, stratum in s.execute(
        select(CampaignAnswer, CampaignMember.stratum)
        .join(CampaignMember, CampaignMember.id == CampaignAnswer.member_id)
        .where(CampaignAnswer.campaign_id == campaign_id)
        .order_by(CampaignAnswer.member_id, CampaignAnswer.id)
    ):
        latest[answer.member_id] = (stratum, answer)
    return [latest[k] for k in sorted(latest)]


def _previous(s: Session, campaign: Campaign) -> Campaign | None:
    named = (campaign.questionnaire or {}).get("previous")
    if named:
        return s.scalar(select(Campaign).where(Campaign.name == named))
    if campaign.launched_at is None:
        return None
    return s.scalar(
        select(Campaign)
        .where(
            Campaign.id != campaign.id,
            Campaign.launched_at.is_not(None),
            Campaign.launched_at < campaign.launched_at,
        )
        .order_by(Campaign.launched_at.desc(), Campaign.id.desc())
        .limit(1)
    )


def campaign_results(session: Session, name: str, *, masked: bool = True) -> CampaignResults:
    """The results of campaign ``name`` from the store (see the module docstring).

    ``masked``: comments with phone numbers and e-mail addresses masked
    (qa-read); False only for roles that see contact details.

    Raises:
        StateError: no campaign of that name was planned.
    """
    campaign = session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        msg = f"campaign {name!r} has no plan yet: nothing to report"
        raise StateError(msg)
    form = campaign.questionnaire or {}
    items = [_item(i) for i in form.get("items") or []]
    answers = _answers(session, campaign.id)
    by_stratum: dict[str, list[dict[str, Any]]] = {}
    for stratum, answer in answers:
        by_stratum.setdefault(stratum, []).append(answer.values)
    everyone = [a.values for _, a in answers]
    previous = _previous(session, campaign)
    before: dict[str, Estimate] = {}
    if previous is not None:
        old = {i["name"]: _item(i) for i in (previous.questionnaire or {}).get("items") or []}
        old_answers = [a.values for _, a in _answers(session, previous.id)]
        before = {n: _estimate(i, old_answers) for n, i in old.items()}
    results = tuple(
        ItemResult(
            item=i.name,
            question=i.question,
            kind="yes_no" if i.is_yes_no else "score",
            scale=i.scale,
            overall=_estimate(i, everyone),
            strata={k: _estimate(i, v) for k, v in sorted(by_stratum.items())},
            previous=before.get(i.name),
        )
        for i in items
    )
    counts: dict[str, list[int]] = {}
    for stratum, state, responded, reminders in session.execute(
        select(
            CampaignMember.stratum,
            CampaignMember.state,
            CampaignMember.responded_at,
            CampaignMember.reminders,
        ).where(CampaignMember.campaign_id == campaign.id)
    ):
        row = counts.setdefault(stratum, [0, 0, 0, 0])
        row[0] += 1
        row[1] += 1 if state == "sent" else 0
        row[2] += 1 if state == "sent" and responded is not None else 0
        row[3] += 1 if reminders else 0
    target = float((campaign.questionnaire or {}).get("coverage_target") or 0.0)
    strata = tuple(
        StratumResponse(
            stratum=k, size=v[0], invited=v[1], answered=v[2], reminded=v[3], target=target
        )
        for k, v in sorted(counts.items())
    )
    comments = []
    for stratum, answer in answers:
        for code in form.get("comments") or []:
            text = str(answer.values.get(code) or "").strip()
            if text:
                shown = (mask_pii_text(text) or "") if masked else text
                when = answer.submitted_at.isoformat() if answer.submitted_at else None
                comments.append(Comment(stratum, code, when, shown))
    comments.sort(key=lambda c: (c.stratum, c.submitted_at or "", c.question, c.text))
    stamps = [campaign.planned_at, campaign.launched_at, campaign.closed_at]
    stamps += [a.collected_at for _, a in answers]
    as_of = max(t for t in stamps if t is not None)
    return CampaignResults(
        name=campaign.name,
        state=campaign.state,
        window_from=campaign.window_from,
        window_to=campaign.window_to,
        channel=campaign.channel,
        survey_id=campaign.survey_id,
        as_of=as_of.isoformat(),
        method=METHOD,
        masked=masked,
        previous=previous.name if previous is not None else None,
        items=results,
        strata=strata,
        comments=tuple(comments),
        excluded=dict(sorted((campaign.excluded or {}).items())),
    )
