"""The sandbox ITSM source: as-of view, cursor with overlap, failures, tickets."""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import connectors  # noqa: F401  (registers the built-in types)
import mappings
from connectors.sandbox import SandboxSource
from core import registry
from core.connector import ConnectorContext, Source
from core.errors import ConfigError, FatalError, RetriableError
from core.records import Category, TicketRequest, TicketStatus

START = datetime(2026, 9, 30, 16, 0, tzinfo=UTC)  # 2026-10-01 00:00 in Shanghai


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make(tmp_path: Path, clock: Clock, name: str = "itsm", **options) -> SandboxSource:
    ctx = ConnectorContext(state_dir=tmp_path, mapping=mappings.load("sandbox"), clock=clock)
    return SandboxSource(name, {"month": "2026-10", "incidents": 300, **options}, ctx)


def pull_all(source: SandboxSource, cursor: str | None) -> tuple[list, str | None]:
    records = []
    for batch in source.pull(cursor):
        records.extend(batch.records)
        cursor = batch.cursor
    return records, cursor


def ticket(key: str = "nc-1") -> TicketRequest:
    t = datetime(2026, 10, 9, tzinfo=UTC)
    return TicketRequest(key, "title", "desc", "10001", "SBX-2", "callback_missed", "major",
                         t, t + timedelta(days=14), labels=("qloop",))  # fmt: skip


def test_registered_with_its_mapping():
    entry = registry.get("source", "sandbox")
    assert entry.factory is SandboxSource and entry.mapping == "sandbox"
    assert "month" in entry.options_schema["required"]


def test_options_are_validated(tmp_path):
    ctx = ConnectorContext(state_dir=tmp_path)
    with pytest.raises(ConfigError) as err:
        SandboxSource("s", {"incidents": 0}, ctx)
    assert {p.path for p in err.value.problems} == {"sources.s", "sources.s.incidents"}
    with pytest.raises(ConfigError, match="overlap"):
        SandboxSource("s", {"month": "2026-10", "overlap": "soon"}, ctx)
    with pytest.raises(ConfigError, match="month"):
        SandboxSource("s", {"month": "2026-13"}, ctx)


def test_as_of_view_hides_the_future(tmp_path):
    clock = Clock(datetime(2026, 10, 12, 3, 0, tzinfo=UTC))
    source = make(tmp_path, clock)
    assert isinstance(source, Source)
    records, cursor = pull_all(source, None)
    assert 50 < len(records) < 250
    for rec in records:
        assert rec.created_at <= clock.now
        assert all(c.at <= clock.now for c in rec.history)
        assert rec.updated_at == rec.history[-1].at
        assert rec.category == rec.history[-1].category
        assert rec.status == rec.history[-1].status
    assert any(r.category in (Category.NEW, Category.IN_PROGRESS, Category.WAITING)
               for r in records)  # fmt: skip
    assert cursor == max(r.updated_at for r in records).isoformat()
    source.close()


def test_successive_pulls_see_every_incident_and_every_change(tmp_path):
    clock = Clock(START)
    source = make(tmp_path, clock, page_size=25)
    latest: dict[str, object] = {}
    cursor, total, pulls = None, 0, 0
    while clock.now < START + timedelta(days=50):
        clock.now += timedelta(hours=7, minutes=13)
        previous = cursor
        batches = list(source.pull(cursor))
        pulls += 1
        for batch in batches:
            assert len(batch.records) <= 25
            assert batch.cursor >= (previous or "")  # never goes back
            previous = batch.cursor
            for rec in batch.records:
                latest[rec.key] = rec
                total += 1
        cursor = previous
    fresh = make(tmp_path, clock, name="fresh")
    final, _ = pull_all(fresh, None)
    fresh.close()
    assert len(final) == 300
    assert {r.key for r in final} == set(latest)
    for rec in final:  # the last pulled version is the final one: no change was missed
        assert latest[rec.key].history == rec.history, rec.key
    assert total < 300 * 4  # incremental, not full pulls
    source.close()


def test_overlap_rereads_the_boundary(tmp_path):
    clock = Clock(datetime(2026, 10, 15, 6, 0, tzinfo=UTC))  # 14:00 in Shanghai
    source = make(tmp_path, clock, overlap="2h", page_size=1)
    records, cursor = pull_all(source, None)
    edge = datetime.fromisoformat(cursor) - timedelta(hours=2)
    again = []
    for batch in source.pull(cursor):
        assert batch.cursor == cursor  # the overlap never moves the cursor back
        again.extend(batch.records)
    assert len(again) > 3
    assert {r.key for r in again} == {r.key for r in records if r.updated_at >= edge}
    source.close()


def test_failures_at_the_configured_rate_and_retries_succeed(tmp_path):
    clock = Clock(datetime(2026, 10, 20, tzinfo=UTC))
    source = make(tmp_path, clock, failure_rate=0.3, page_size=10, retry_after=0.5)
    outcomes = []
    for i in range(800):
        try:
            source.create_ticket(ticket(f"nc-{i % 50}"))
            outcomes.append(True)
        except RetriableError as exc:
            assert "sandbox ITSM" in str(exc)
            assert exc.retry_after in (0.0, 0.5, None)
            outcomes.append(False)
    rate = outcomes.count(False) / len(outcomes)
    assert rate == pytest.approx(0.3, abs=0.05)
    assert not any(a is b is False for a, b in itertools.pairwise(outcomes))
    # a whole pull, retried from the last cursor after each failure, gets everything
    cursor, seen, failures = None, set(), 0
    while True:
        try:
            for batch in source.pull(cursor):
                seen.update(r.key for r in batch.records)
                cursor = batch.cursor
            break
        except RetriableError:
            failures += 1
    assert failures > 0
    clean = make(tmp_path, clock, name="ok")
    assert seen == {r.key for r in pull_all(clean, None)[0]}
    clean.close()
    source.close()


def test_create_ticket_is_idempotent_across_instances(tmp_path):
    clock = Clock(datetime(2026, 10, 20, tzinfo=UTC))
    one, two = make(tmp_path, clock), make(tmp_path, clock)
    ref = one.create_ticket(ticket("nc-1"))
    assert ref.ref == "SBX-QA-1"
    assert two.create_ticket(ticket("nc-1")) == ref
    assert one.create_ticket(ticket("nc-2")).ref == "SBX-QA-2"
    assert two.ticket_status("SBX-QA-2").ref == "SBX-QA-2"
    one.close()
    two.close()


def test_create_ticket_from_another_process(tmp_path):
    code = (
        "import sys; from datetime import datetime, UTC, timedelta; from pathlib import Path\n"
        "from core.connector import ConnectorContext\n"
        "from core.records import TicketRequest\n"
        "from connectors.sandbox import SandboxSource\n"
        "s = SandboxSource('itsm', {'month': '2026-10'}, ConnectorContext(Path(sys.argv[1])))\n"
        "t = datetime(2026, 10, 9, tzinfo=UTC)\n"
        "r = s.create_ticket(TicketRequest('nc-x', 't', 'd', '1', 'SBX-1', 'r', 'minor', t, t))\n"
        "print(r.ref)\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True, cwd=root)  # fmt: skip
    source = make(tmp_path, Clock(START))
    assert source.create_ticket(ticket("nc-x")).ref == out.stdout.strip() == "SBX-QA-1"
    assert source.create_ticket(ticket("nc-y")).ref == "SBX-QA-2"
    source.close()


def test_ticket_lost_answer_then_retry_makes_one_ticket(tmp_path):
    clock = Clock(START)
    source = make(tmp_path, clock, failure_rate=0.5)
    refs, errors = set(), 0
    for i in range(60):
        while True:
            try:
                refs.add(source.create_ticket(ticket(f"nc-{i}")).ref)
                break
            except RetriableError:
                errors += 1
    assert errors > 10
    assert refs == {f"SBX-QA-{n}" for n in range(1, 61)}
    source.close()


def test_ticket_status_progresses_like_a_team_works(tmp_path):
    clock = Clock(datetime(2026, 10, 20, tzinfo=UTC))
    source = make(tmp_path, clock)
    order = [Category.NEW, Category.IN_PROGRESS, Category.RESOLVED, Category.CLOSED]
    refs = [source.create_ticket(ticket(f"nc-{i}")).ref for i in range(200)]
    done, history = 0, {}
    for step in range(10):
        clock.now = datetime(2026, 10, 20, tzinfo=UTC) + timedelta(hours=step)
        for ref in refs:
            status = source.ticket_status(ref)
            history.setdefault(ref, []).append((clock.now, status))
    for ref, reads in history.items():
        cats = [s.category for _, s in reads]
        ranks = [order.index(c) if c in order else 99 for c in cats]
        assert ranks == sorted(ranks), (ref, cats)
        finished = [(t, s) for t, s in reads if s.is_done]
        if finished:
            done += 1
            first_done_at = finished[0][0]
            assert all(s.closed_at == first_done_at for _, s in finished)
        assert all(s.closed_at is None for _, s in reads if not s.is_done)
    assert 0.62 < done / len(refs) < 0.86  # ~25% stay open
    again = make(tmp_path, clock, name="itsm")  # same state: progress is remembered
    for ref in refs:
        last = history[ref][-1][1]
        now = again.ticket_status(ref)
        assert now.category == last.category or now.is_done, ref
        assert now.closed_at == last.closed_at or not last.is_done
    again.close()
    source.close()


def test_unknown_ticket_is_fatal(tmp_path):
    source = make(tmp_path, Clock(START))
    for ref in ("SBX-QA-99", "nonsense", "SBX-QA-x"):
        with pytest.raises(FatalError, match="404"):
            source.ticket_status(ref)
    source.close()


def test_ticket_batches_answer_as_single_calls_would(tmp_path):
    """create_tickets / ticket_statuses: one answer per item, same promises as one call each."""
    clock = Clock(datetime(2026, 10, 20, tzinfo=UTC))
    source = make(tmp_path, clock)
    first = source.create_ticket(ticket("nc-0")).ref
    made = source.create_tickets([ticket("nc-0"), ticket("nc-1"), ticket("nc-1"), ticket("nc-2")])
    assert [m.ref for m in made] == [first, "SBX-QA-2", "SBX-QA-2", "SBX-QA-3"]  # type: ignore[union-attr]
    twin = make(tmp_path, clock)  # the same remote, read one ticket at a time
    answers = source.ticket_statuses(["SBX-QA-1", "nonsense", "SBX-QA-99", "SBX-QA-2"])
    assert isinstance(answers[1], FatalError) and isinstance(answers[2], FatalError)
    assert "404" in str(answers[1]) and "404" in str(answers[2])
    for ref, got in (("SBX-QA-1", answers[0]), ("SBX-QA-2", answers[3])):
        assert isinstance(got, TicketStatus) and got.ref == ref
    # each batch read moved its ticket by one read, as a single read would have
    for _ in range(6):
        batch = source.ticket_statuses(["SBX-QA-1", "SBX-QA-3"])
        single = [twin.ticket_status("SBX-QA-2")]
        assert all(isinstance(a, TicketStatus) for a in batch + single)
    reads = dict(source._state.read("SELECT seq, reads FROM tickets"))
    assert reads == {1: 7, 2: 7, 3: 6}
    twin.close()
    source.close()


def test_ticket_batch_with_failures_loses_and_doubles_nothing(tmp_path):
    source = make(tmp_path, Clock(START), failure_rate=0.5)
    pending = [ticket(f"nc-{i}") for i in range(40)]
    refs: dict[str, str] = {}
    failures = 0
    while pending:
        answers = source.create_tickets(pending)
        retry = []
        for t, a in zip(pending, answers, strict=True):
            if isinstance(a, RetriableError):
                failures += 1
                retry.append(t)
            else:
                refs[t.dedup_key] = a.ref
        pending = retry
    assert failures > 5
    assert sorted(refs.values(), key=lambda r: int(r.rsplit("-", 1)[1])) == [
        f"SBX-QA-{n}" for n in range(1, 41)
    ]
    source.close()
