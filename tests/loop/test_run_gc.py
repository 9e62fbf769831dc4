"""run_once's steps run with the objects alive before them frozen out of the cyclic GC."""

from __future__ import annotations

import gc

from core.errors import QloopError
from core.loop.common import StepResult
from core.loop.run import _guard


def test_a_step_runs_frozen_and_everything_is_unfrozen_after() -> None:
    before = gc.get_freeze_count()
    seen: list[int] = []

    def step() -> StepResult:
        seen.append(gc.get_freeze_count())
        return StepResult("probe")

    assert _guard("probe", step).step == "probe"
    assert seen and seen[0] > before
    assert gc.get_freeze_count() == before


def test_a_failing_step_unfreezes_too() -> None:
    before = gc.get_freeze_count()

    def step() -> StepResult:
        raise QloopError("down")

    failed = _guard("probe", step)
    assert failed.errors == ["probe: down"]
    assert gc.get_freeze_count() == before
