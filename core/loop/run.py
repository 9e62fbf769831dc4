"""The whole loop once, in order: pull → plan → push → collect → reconcile →
evaluate → sample → raise → push back → track → complaints (raise, push their
tickets, follow, push follow-up calls) → housekeeping (audit retention).

Every step is idempotent, so running the loop again sends nothing twice;
one failing connector does not stop the others (its error is reported).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import QloopError
from core.gcfreeze import old_objects_frozen
from core.loop.collect import collect
from core.loop.common import StepResult, log
from core.loop.evaluate import evaluate
from core.loop.housekeeping import prune_audit
from core.loop.nonconformities import raise_nonconformities
from core.loop.plan import plan
from core.loop.pull import pull
from core.loop.push import FOLLOW_UPS, push
from core.loop.reconcile import reconcile
from core.loop.sample import sample_surveys
from core.loop.track import track
from core.runtime import Runtime

Progress = Callable[[str, StepResult, float], None]


@dataclass
class RunSummary:
    steps: list[tuple[StepResult, float]] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [e for step, _ in self.steps for e in step.errors]

    def total(self, name: str) -> int:
        return sum(step.counts[name] for step, _ in self.steps)

    def sent(self) -> int:
        return sum(
            v for step, _ in self.steps for k, v in step.counts.items() if k.startswith("sent_")
        )


def _guard(name: str, fn: Callable[[], StepResult]) -> StepResult:
    try:
        with old_objects_frozen():
            return fn()
    except QloopError as exc:
        failed = StepResult(name)
        failed.errors.append(f"{name}: {exc}")
        log.error("%s failed: %s", name, exc)
        return failed


def run_once(rt: Runtime, progress: Progress | None = None) -> RunSummary:
    """Run every step of the loop once over every enabled source and channel."""
    summary = RunSummary()

    def step(name: str, fn: Callable[[], StepResult]) -> None:
        started = time.perf_counter()
        result = _guard(name, fn)
        elapsed = time.perf_counter() - started
        summary.steps.append((result, elapsed))
        if progress:
            progress(name, result, elapsed)

    for source in rt.source_names():
        step(f"pull {source}", lambda s=source: pull(rt, s))  # type: ignore[misc]
    step("plan", lambda: plan(rt))
    step("push", lambda: push(rt, kinds=("callback", "survey")))
    for channel in rt.channel_names():
        step(f"collect {channel}", lambda c=channel: collect(rt, c))  # type: ignore[misc]
    step("reconcile", lambda: reconcile(rt))
    step("evaluate", lambda: evaluate(rt, processes=rt.config.evaluate_processes))
    step("sample", lambda: sample_surveys(rt))
    step("push surveys", lambda: push(rt, kinds=("survey",)))
    step("raise", lambda: raise_nonconformities(rt))
    step("push back", lambda: push(rt, kinds=("ticket", *FOLLOW_UPS)))
    step("track", lambda: track(rt))
    if rt.config.complaints is not None:
        # imported here: core.complaints builds on the loop's modules (outbox, bulk writes)
        from core.complaints.following import PUSHED, follow_complaints
        from core.complaints.raising import raise_complaints

        step("complaints", lambda: raise_complaints(rt))
        step("push complaints", lambda: push(rt, kinds=(*PUSHED, *FOLLOW_UPS)))
        step("follow complaints", lambda: follow_complaints(rt))
        step("push follow-ups", lambda: push(rt, kinds=PUSHED))
    step("housekeeping", lambda: prune_audit(rt))
    return summary
