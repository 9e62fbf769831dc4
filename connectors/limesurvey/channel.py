"""The ``limesurvey`` survey channel: invitations and answers through RemoteControl 2.

Sending an invitation adds one survey participant and has LimeSurvey mail
its invitation template:

* the participant gets LimeSurvey's own (random) access token; qloop's
  correlation token goes in ``correlation_attribute``, the incident key in
  ``incident_attribute`` (for the template: ``{ATTRIBUTE_2}``) and the
  outbox idempotency key in ``key_attribute`` (so :meth:`lookup` can answer).
  qloop's token is not used as the access token because LimeSurvey
  sanitises and length-limits tokens, and it would appear in the link;
* before adding, the participant is looked up by correlation token, so a
  ``send`` retried after a lost reply adds nobody and mails nobody twice:
  ``invite_participants`` with ``bEmail=true`` only mails participants never
  invited, and it is only called while the participant's ``sent`` is ``N``;
* LimeSurvey silently drops attributes the survey does not have, so the
  attributes are checked once (``get_survey_properties`` →
  ``attributedescriptions``) and again on the row ``add_participants``
  saved: a missing one is a :class:`FatalError` naming it.

Collecting lists the participants whose ``completed`` is not ``N`` (paged by
``tid``), keeps those completed since the cursor (LimeSurvey's
``Y-m-d H:i``, server-local; ``Y`` — completed, time withheld — is always
kept) and exports their responses with ``export_responses_by_token``. The
cursor is ``{"v": 1, "since": "<Y-m-d H:i>"}``; the minute of ``since`` is
read again, so a repeated poll returns answers already seen, which the core
drops by ``provider_event_id`` (``<survey id>:<response id>``).

Needs LimeSurvey 5 or later (``list_participants`` conditions with
operators) and a user with ``tokens`` (create, read, update) and
``responses`` (read, export) permissions on the survey.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from connectors.http import HttpService
from connectors.limesurvey.answers import (
    AnswerMapping,
    Participant,
    decode_export,
    local_time,
    to_outcome,
)
from connectors.limesurvey.options import LimeSurveyOptions, parse_options
from connectors.limesurvey.rpc import RpcClient, status_of
from core.connector import CampaignResponse, ConnectorContext
from core.errors import FatalError, InputError, RetriableError
from core.limits import check_outcome
from core.records import (
    CollectedBatch,
    Contact,
    OutboundMessage,
    Outcome,
    Rejected,
    SendResult,
)
from core.timeutil import to_utc

log = logging.getLogger("qloop")

NO_PARTICIPANTS = "No survey participants found."
NO_CANDIDATES = "Error: No candidate tokens"
NO_RESPONSE = frozenset({"No Response found for Token", "No Data, could not get max id."})
MAX_INVITE_CALLS = 1000
"""Guard: invite_participants calls for one batch before giving up (LimeSurvey caps each call)."""
_LEFT = re.compile(r"^\s*(-?\d+)\s+left to send\s*$")
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}")
_PARTICIPANT_FIELDS = ("completed", "sent", "emailstatus")
_RESPONSE_META = frozenset(
    {"id", "submitdate", "lastpage", "startlanguage", "seed", "token", "startdate", "datestamp"}
)


class LimeSurveyChannel:
    """A survey channel on one LimeSurvey survey (see module docstring).

    Args:
        name: The channel's name in the configuration.
        options: See :data:`connectors.limesurvey.options.OPTIONS_SCHEMA`.
        ctx: ``mapping`` (answers and participant attributes), ``clock``, ``sleep``.
        transport: An ``httpx`` transport (tests).
    """

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        ctx: ConnectorContext,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.kinds = frozenset({"survey"})
        self.where = f"channels.{name}"
        self.opts: LimeSurveyOptions = parse_options(name, options, ctx.mapping)
        self.answers = AnswerMapping.from_mapping(ctx.mapping, self.where)
        self._ctx = ctx
        parts = urlsplit(self.opts.url)
        http = HttpService(
            self.where,
            f"{parts.scheme}://{parts.netloc}",
            headers={"Accept": "application/json"},
            timeout=self.opts.timeout,
            verify=self.opts.verify_tls,
            rate=self.opts.rate,
            sleep=ctx.sleep,
            transport=transport,
            redis_url=ctx.redis_url,
        )
        self.rpc = RpcClient(
            self.where,
            self.opts.url,
            self.opts.username,
            self.opts.password,
            http=http,
            plugin=self.opts.auth_plugin,
        )
        self._ready = False
        self._siblings: dict[int, LimeSurveyChannel] = {}

    @property
    def survey_id(self) -> int:
        return self.opts.survey_id

    def _ref(self, tid: int) -> str:
        return f"{self.survey_id}:{tid}"

    # -- checks ------------------------------------------------------------------

    def _fields(self) -> list[str]:
        return [*self.opts.attributes, *_PARTICIPANT_FIELDS]

    def ensure_ready(self) -> None:
        """Check once that the survey can take qloop's participants.

        Raises:
            FatalError: the survey is anonymized or inactive, has no
                participants table, or lacks one of the configured attributes.
        """
        if self._ready:
            return
        sid = self.survey_id
        props = self.rpc.call(
            "get_survey_properties", sid, ["attributedescriptions", "anonymized", "active"]
        )
        if not isinstance(props, dict):
            msg = f"{self.where}: get_survey_properties: unexpected reply for survey {sid}"
            raise FatalError(msg)
        if props.get("anonymized") == "Y":
            msg = (
                f"{self.where}: survey {sid} has anonymized responses: they carry no token, "
                "so answers cannot be tied to incidents (set Anonymized responses = No)"
            )
            raise FatalError(msg)
        if props.get("active") not in (None, "Y"):
            msg = f"{self.where}: survey {sid} is not active: participants could not answer"
            raise FatalError(msg)
        probe = self.rpc.call(
            "list_participants", sid, 0, 1, False, self._fields(), {}, empty={NO_PARTICIPANTS}
        )
        known = (
            _attribute_names(props["attributedescriptions"])
            if "attributedescriptions" in props
            else None
        )
        if known is None and isinstance(probe, list) and probe:
            known = {k for k in probe[0] if k.startswith("attribute_")}
        if known is not None:
            missing = [a for a in self.opts.attributes if a not in known]
            if missing:
                msg = (
                    f"{self.where}: survey {sid} has no participant attribute "
                    f"{', '.join(missing)} (LimeSurvey would drop it silently): add it under "
                    "Survey participants > Manage attributes, or change "
                    "correlation_attribute/incident_attribute/key_attribute"
                )
                raise FatalError(msg)
        self._ready = True

    def probe(self) -> list[str]:
        """What the channel can see: the survey and its attributes (``qloop sources test``)."""
        self.ensure_ready()
        return [
            f"LimeSurvey survey {self.survey_id} at {urlsplit(self.opts.url).netloc}: active, "
            f"attributes {', '.join(self.opts.attributes)} present"
        ]

    # -- participants --------------------------------------------------------------

    def _find(self, attribute: str, value: str) -> dict[str, Any] | None:
        rows = self.rpc.call(
            "list_participants",
            self.survey_id,
            0,
            2,
            False,
            self._fields(),
            {attribute: value},
            empty={NO_PARTICIPANTS},
        )
        if rows is None:
            return None
        if not isinstance(rows, list):
            msg = f"{self.where}: list_participants: unexpected reply ({type(rows).__name__})"
            raise RetriableError(msg)
        # LimeSurvey ignores a condition on an unknown column: never trust the filter alone
        found = sorted(
            (r for r in rows if isinstance(r, dict) and str(r.get(attribute) or "") == value),
            key=lambda r: int(r["tid"]),
        )
        if len(found) > 1:
            log.warning(
                "%s: %d participants hold the same %s; using tid %s",
                self.where,
                len(found),
                attribute,
                found[0]["tid"],
            )
        return found[0] if found else None

    def _add(self, message: OutboundMessage, email: str) -> dict[str, Any]:
        values = {
            self.opts.correlation_attribute: message.correlation_token,
            self.opts.incident_attribute: message.incident_key,
        }
        if self.opts.key_attribute:
            values[self.opts.key_attribute] = message.idempotency_key
        participant: dict[str, Any] = {
            "email": email,
            "firstname": (message.contact.name or "").strip(),
            "lastname": "",
            **values,
        }
        if self.opts.language:
            participant["language"] = self.opts.language
        result = self.rpc.call(
            "add_participants", self.survey_id, [participant], True, idempotent=False
        )
        if not isinstance(result, list) or len(result) != 1 or not isinstance(result[0], dict):
            msg = f"{self.where}: add_participants: unexpected reply for {message.incident_key}"
            raise FatalError(msg)
        row = result[0]
        if row.get("errors"):
            msg = (
                f"{self.where}: add_participants refused the participant for "
                f"{message.incident_key}: {_brief(row['errors'])}"
            )
            raise FatalError(msg)
        if "tid" not in row:
            msg = f"{self.where}: add_participants returned no tid for {message.incident_key}"
            raise FatalError(msg)
        dropped = [a for a, v in values.items() if str(row.get(a) or "") != v]
        if dropped:
            msg = (
                f"{self.where}: survey {self.survey_id} dropped participant attribute "
                f"{', '.join(dropped)} (participant tid {row['tid']} for {message.incident_key}): "
                "the attribute does not exist in its participants table"
            )
            raise FatalError(msg)
        return row

    def invite(self, tids: list[int]) -> int:
        """Mail the invitation to the never-invited participants among ``tids``.

        LimeSurvey mails at most ``maxemails`` per call and answers
        ``"N left to send"``: the call is repeated until none are left.
        Returns how many were mailed.

        Raises:
            FatalError: LimeSurvey reported a failed invitation (its error kept).
            RetriableError: still some left after :data:`MAX_INVITE_CALLS` calls.
        """
        mailed = 0
        for _ in range(MAX_INVITE_CALLS):
            result = self.rpc.call(
                "invite_participants",
                self.survey_id,
                tids,
                True,
                idempotent=False,
                empty={NO_CANDIDATES},
            )
            if result is None:
                return mailed
            if not isinstance(result, dict):
                msg = f"{self.where}: invite_participants: unexpected reply"
                raise RetriableError(msg)
            for tid, item in result.items():
                if tid == "status" or not isinstance(item, dict):
                    continue
                if item.get("status") != "OK":
                    error = item.get("error") or item.get("status") or "unknown error"
                    msg = f"{self.where}: invitation to participant tid {tid} failed: {error}"
                    raise FatalError(msg)
                mailed += 1
            match = _LEFT.match(status_of(result) or "")
            if match is None or int(match.group(1)) <= 0:
                return mailed
        msg = f"{self.where}: invite_participants: still invitations left after many calls"
        raise RetriableError(msg)

    # -- campaigns (core.connector.CampaignSurveys) -----------------------------------

    def for_survey(self, survey_id: int) -> LimeSurveyChannel:
        """This channel on questionnaire ``survey_id``: same server, session and attributes.

        The survey is checked like the channel's own (active, not anonymized,
        the attributes present) before its first participant is added.
        """
        if survey_id == self.survey_id:
            return self
        if survey_id not in self._siblings:
            sibling = copy.copy(self)
            sibling.opts = dataclasses.replace(self.opts, survey_id=survey_id)
            sibling.where = f"{self.where} (survey {survey_id})"
            sibling._ready = False
            sibling._siblings = {}
            self._siblings[survey_id] = sibling
        return self._siblings[survey_id]

    def respondents(self) -> dict[str, datetime | None]:
        """Correlation tokens of the survey's participants who completed, and when (UTC).

        ``completed`` ``Y`` (completed, time withheld) maps to None; ``N`` and
        ``Q`` (screened out by a quota) are not completions.
        """
        found: dict[str, datetime | None] = {}
        for row in self._not_unfinished():
            token = str(row.get(self.opts.correlation_attribute) or "")
            completed = str(row.get("completed") or "N").strip()
            if not token or completed in ("N", "Q", ""):
                continue
            stamp = completed[:16] if _STAMP.match(completed) else None
            found[token] = (
                local_time(stamp, self.opts.server_timezone) if stamp is not None else None
            )
        return found

    def _not_unfinished(self) -> Iterator[dict[str, Any]]:
        """The survey's participants whose ``completed`` is not ``N``, in tid order."""
        for page in self._not_unfinished_pages():
            yield from page

    def _not_unfinished_pages(self) -> Iterator[list[dict[str, Any]]]:
        """Those participants a page of ``list_participants`` at a time (paged by tid)."""
        self.ensure_ready()
        last_tid = 0
        while True:
            rows = self.rpc.call(
                "list_participants",
                self.survey_id,
                0,
                self.opts.batch_size,
                False,
                self._fields(),
                {"completed": ["<>", "N"], "tid": [">", last_tid]},
                empty={NO_PARTICIPANTS},
            )
            page = sorted(
                (r for r in rows or [] if isinstance(r, dict) and int(r["tid"]) > last_tid),
                key=lambda r: int(r["tid"]),
            )
            if page:
                last_tid = int(page[-1]["tid"])
                yield page
            if not page or len(rows or []) < self.opts.batch_size:
                return

    def remind(self, provider_ref: str, round_no: int, min_days: int) -> str:
        """Mail reminder ``round_no`` to participant ``provider_ref`` (``<sid>:<tid>``).

        ``remind_participants(sid, iMinDaysBetween=min_days,
        iMaxReminders=round_no, aTokenIds=[tid])``: LimeSurvey only reminds a
        participant invited, not completed, with ``emailstatus`` OK, whose
        ``remindercount`` is below ``round_no`` and whose last mail is older
        than ``min_days``, so repeating the call after a lost reply or a
        crash mails nobody twice. When LimeSurvey finds no candidate the
        participant row tells why: already reminded this round
        (``already``), completed meanwhile (``answered``), or not remindable.

        Raises:
            FatalError: LimeSurvey refused the reminder, or the participant
                was never invited or has a bad e-mail status.
            RetriableError: not due yet by LimeSurvey's clock (``min_days``).
        """
        self.ensure_ready()
        tid = int(provider_ref.rsplit(":", 1)[-1])
        result = self.rpc.call(
            "remind_participants", self.survey_id, min_days, round_no, [tid], empty={NO_CANDIDATES}
        )
        if isinstance(result, dict) and isinstance(result.get(str(tid)), dict):
            item = result[str(tid)]
            if item.get("status") == "OK":
                return "reminded"
            error = item.get("error") or item.get("status") or "unknown error"
            msg = f"{self.where}: reminder {round_no} to participant tid {tid} failed: {error}"
            raise FatalError(msg)
        row = self.rpc.call(
            "get_participant_properties",
            self.survey_id,
            tid,
            ["completed", "sent", "remindercount", "remindersent", "emailstatus"],
        )
        if not isinstance(row, dict):
            msg = f"{self.where}: get_participant_properties: unexpected reply for tid {tid}"
            raise RetriableError(msg)
        if int(row.get("remindercount") or 0) >= round_no:
            return "already"
        if str(row.get("completed") or "N").strip() not in ("N", ""):
            return "answered"
        if not _was_sent(row):
            msg = f"{self.where}: participant tid {tid} was never invited: no reminder"
            raise FatalError(msg)
        if row.get("emailstatus") != "OK":
            msg = (
                f"{self.where}: participant tid {tid} has e-mail status "
                f"{row.get('emailstatus')!r}: LimeSurvey sends no reminder"
            )
            raise FatalError(msg)
        msg = (
            f"{self.where}: reminder {round_no} to participant tid {tid} is not due yet by "
            f"LimeSurvey's clock (invited {row.get('sent')}, reminded {row.get('remindersent')})"
        )
        raise RetriableError(msg, retry_after=3600)

    def campaign_responses(self) -> list[CampaignResponse]:
        """The questionnaire's complete responses, each with its participant's correlation token.

        The completed participants (``list_participants``, paged by tid) give
        LimeSurvey token → correlation token; one ``export_responses`` (JSON,
        complete, question codes, short answers) gives the responses; a
        response without a known token (added by hand, anonymized) is left out.
        """
        tokens: dict[str, str] = {}
        for row in self._not_unfinished():
            corr = str(row.get(self.opts.correlation_attribute) or "")
            if corr and row.get("token"):
                tokens[str(row["token"])] = corr
        if not tokens:
            return []
        data = self.rpc.call(
            "export_responses",
            self.survey_id,
            "json",
            None,
            "complete",
            "code",
            "short",
            empty=NO_RESPONSE,
        )
        if data is None:
            return []
        out = []
        where = f"{self.where}: export_responses"
        for row in decode_export(data, where):
            owner = tokens.get(str(row.get("token") or ""))
            rid = str(row.get("id") or "").strip()
            if owner is None or not rid or not str(row.get("submitdate") or "").strip():
                continue
            values = {
                str(k): str(v)
                for k, v in row.items()
                if v is not None and str(v).strip() != "" and k not in _RESPONSE_META
            }
            out.append(
                CampaignResponse(
                    correlation_token=owner,
                    response_id=f"{self.survey_id}:{rid}",
                    submitted_at=local_time(row.get("submitdate"), self.opts.server_timezone),
                    values=values,
                )
            )
        return out

    # -- Channel ---------------------------------------------------------------------

    def _address(self, contact: Contact) -> str | None:
        email = (contact.email or "").strip()
        local, at, domain = email.rpartition("@")
        if not (local and at and "." in domain) or any(c.isspace() for c in email):
            return None
        return None if self.opts.ascii_email_only and not email.isascii() else email

    def can_reach(self, contact: Contact) -> bool:
        """Needs an e-mail address (ASCII-only when ``ascii_email_only``)."""
        return self._address(contact) is not None

    def send(self, message: OutboundMessage) -> SendResult:
        """Add the participant (once per correlation token) and mail its invitation (once).

        Raises:
            FatalError: not a survey, no usable e-mail, a missing attribute,
                or LimeSurvey refused the participant or the invitation.
            RetriableError: transport failure; the next try looks before adding.
        """
        if message.kind != "survey":
            msg = f"{self.where}: a LimeSurvey channel sends surveys, not {message.kind!r}"
            raise FatalError(msg)
        email = self._address(message.contact)
        if email is None:
            msg = f"{self.where}: no usable e-mail address for {message.incident_key}"
            raise FatalError(msg)
        self.ensure_ready()
        row = self._find(self.opts.correlation_attribute, message.correlation_token)
        if row is None:
            row = self._add(message, email)
        tid = int(row["tid"])
        if not _was_sent(row) and self.invite([tid]) == 0:
            again = self._find(self.opts.correlation_attribute, message.correlation_token)
            if again is None or not _was_sent(again):
                msg = (
                    f"{self.where}: LimeSurvey would not invite participant tid {tid} "
                    f"({message.incident_key}): e-mail status not OK, outside its validity "
                    "dates, or already completed"
                )
                raise FatalError(msg)
        return SendResult(provider_ref=self._ref(tid))

    def lookup(self, idempotency_key: str) -> SendResult | None:
        """The invitation for ``idempotency_key`` if its participant exists and was mailed.

        A participant added but not yet mailed answers None, so the next
        ``send`` completes it. Raises :class:`NotImplementedError` when no
        ``key_attribute`` is configured.
        """
        if not self.opts.key_attribute:
            raise NotImplementedError
        self.ensure_ready()
        row = self._find(self.opts.key_attribute, idempotency_key)
        if row is None or not _was_sent(row):
            return None
        return SendResult(provider_ref=self._ref(int(row["tid"])))

    def collect(self, cursor: str | None) -> Iterator[CollectedBatch]:
        """Yield the answers of participants who completed since ``cursor``."""
        since = _load_cursor(cursor, self.where)
        newest = since
        fallback = to_utc(self._ctx.clock())
        for page in self._not_unfinished_pages():
            outcomes: list[Outcome] = []
            rejected: list[Rejected] = []
            for row in page:
                completed = str(row.get("completed") or "N").strip()
                stamp = completed[:16] if _STAMP.match(completed) else None
                if stamp is None and completed != "Y":
                    continue  # N (not done) or Q (screened out by a quota)
                if stamp is not None and since is not None and stamp < since:
                    continue
                outcomes.extend(self._answers_of(row, completed, fallback, rejected))
                if stamp is not None and (newest is None or stamp > newest):
                    newest = stamp
            if outcomes or rejected:
                yield CollectedBatch(
                    outcomes=outcomes, cursor=_dump_cursor(since), rejected=rejected
                )
        if newest != since:
            yield CollectedBatch(outcomes=[], cursor=_dump_cursor(newest))

    def _answers_of(
        self, row: dict[str, Any], completed: str, fallback: Any, rejected: list[Rejected]
    ) -> list[Outcome]:
        """The participant's answers; one the store cannot hold goes to ``rejected``."""
        token = str(row.get("token") or "")
        if not token:
            return []
        data = self.rpc.call(
            "export_responses_by_token",
            self.survey_id,
            "json",
            token,
            None,
            "complete",
            "code",
            "short",
            empty=NO_RESPONSE,
        )
        if data is None:
            return []
        info = row.get("participant_info") or {}
        name = " ".join(p for p in (info.get("firstname"), info.get("lastname")) if p) or None
        participant = Participant(
            tid=int(row["tid"]),
            token=token,
            correlation_token=str(row.get(self.opts.correlation_attribute) or "") or None,
            incident=str(row.get(self.opts.incident_attribute) or "") or None,
            email=info.get("email") or None,
            name=name,
            completed=completed,
        )
        where = f"{self.where}: export_responses_by_token (participant tid {participant.tid})"
        outcomes = []
        for response in decode_export(data, where):
            if str(response.get("token") or token) != token:
                continue
            outcome = to_outcome(
                response,
                participant,
                survey_id=self.survey_id,
                answers=self.answers,
                zone=self.opts.server_timezone,
                fallback_time=fallback,
            )
            if outcome is None:
                continue
            try:
                check_outcome(outcome, where)
            except InputError as exc:  # NUL, NaN, too long: kept aside, the others go on
                rejected.append(Rejected.of(outcome.provider_event_id, exc))
                continue
            outcomes.append(outcome)
        return outcomes

    def close(self) -> None:
        """Release the session key and the HTTP client."""
        self.rpc.close()


def _was_sent(row: Mapping[str, Any]) -> bool:
    sent = str(row.get("sent") or "N").strip()
    return sent not in ("", "N")


def _attribute_names(value: Any) -> set[str] | None:
    """Attribute names from ``attributedescriptions`` (JSON text or dict); None if unreadable."""
    if isinstance(value, str):
        if not value.strip():
            return set()
        try:
            value = json.loads(value)
        except ValueError:
            return None  # PHP-serialized in old versions: probe a participant instead
    if isinstance(value, dict):
        return {str(k) for k in value}
    if value is None or value == []:
        return set()
    return None


def _brief(errors: Any) -> str:
    if isinstance(errors, dict):
        parts = []
        for field, problems in errors.items():
            text = "; ".join(map(str, problems)) if isinstance(problems, list) else str(problems)
            parts.append(f"{field}: {text}")
        return ", ".join(parts)[:300]
    return str(errors)[:300]


def _load_cursor(cursor: str | None, where: str) -> str | None:
    if not cursor:
        return None
    try:
        doc = json.loads(cursor)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("v") != 1:
        msg = f"{where}: bad collect cursor {cursor[:80]!r}"
        raise InputError(msg)
    since = doc.get("since")
    if since is not None and (not isinstance(since, str) or not _STAMP.match(since)):
        msg = f"{where}: bad collect cursor {cursor[:80]!r}"
        raise InputError(msg)
    return since


def _dump_cursor(since: str | None) -> str:
    return json.dumps({"v": 1, "since": since}, separators=(",", ":"))
