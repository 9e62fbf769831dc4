"""A compliance policy: targets, callback and satisfaction rules on a calendar.

The defaults are those of SPEC §10. ``version`` is whatever the caller uses to
tell policy configurations apart (a hash of the policy's config); it is
copied onto every evaluation so results can be recomputed per version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.calendar import BusinessCalendar
from core.errors import ConfigError
from core.timeutil import Duration


@dataclass(frozen=True)
class Policy:
    """Targets and thresholds that compliance is judged against."""

    name: str
    calendar: BusinessCalendar
    response_targets: Mapping[str, Duration]
    resolution_targets: Mapping[str, Duration]
    version: str = "v1"
    callback_within_s: int = 86_400
    callback_min_attempts: int = 3
    low_score_below: float = 4.0
    major_score_at_most: float = 2.0
    major_priorities: frozenset[str] = frozenset({"P1", "P2"})
    rectify_working_days: int = 10

    def __post_init__(self) -> None:
        problems = []
        if self.callback_within_s < 0:
            problems.append(f"callback_within_s must be >= 0, got {self.callback_within_s}")
        if self.callback_min_attempts < 1:
            problems.append(f"callback_min_attempts must be >= 1, got {self.callback_min_attempts}")
        if self.rectify_working_days < 1:
            problems.append(f"rectify_working_days must be >= 1, got {self.rectify_working_days}")
        for label, targets in (
            ("response", self.response_targets),
            ("resolution", self.resolution_targets),
        ):
            for priority, target in targets.items():
                if not isinstance(target, Duration):
                    problems.append(f"{label} target for {priority} is not a Duration: {target!r}")
        if problems:
            msg = f"policy {self.name}: " + "; ".join(problems)
            raise ConfigError(msg)

    def _target(self, targets: Mapping[str, Duration], priority: str) -> int | None:
        target = targets.get(priority)
        if target is None:
            return None
        return target.total_seconds(self.calendar.standard_day_seconds)

    def response_target_s(self, priority: str) -> int | None:
        """Response target in business seconds.

        Args:
            priority: ``P1`` .. ``P4``.

        Returns:
            The target (``bd`` counted as the calendar's standard working day), or None.
        """
        return self._target(self.response_targets, priority)

    def resolution_target_s(self, priority: str) -> int | None:
        """Resolution target in business seconds.

        Args:
            priority: ``P1`` .. ``P4``.

        Returns:
            The target (``bd`` counted as the calendar's standard working day), or None.
        """
        return self._target(self.resolution_targets, priority)
