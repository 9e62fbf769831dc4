"""The compliance engine: SPEC §10 applied to one incident, a month, a sample.

Each submodule's docstring lists the decisions it takes where the SPEC
leaves a point open.
"""

from core.compliance.as_of import facts_as_of, seen_at, whole_second
from core.compliance.callback import (
    Attempt,
    CallbackVerdict,
    ResolutionOutcome,
    SurveyAnswer,
)
from core.compliance.evaluate import Evaluation, IncidentFacts, evaluate_incident
from core.compliance.indicators import (
    MonthlyIndicators,
    NonconformityState,
    Ratio,
    monthly_indicators,
)
from core.compliance.policy import (
    MAJOR,
    MINOR,
    Policy,
    SampleRule,
    policy_default,
    raised_at,
    round_half_up,
    stratum_sample_size,
)
from core.compliance.rules import RULES, Finding
from core.compliance.sampling import SampleResult, StratumReport, stratified_sample
from core.compliance.scores import normalise_score

__all__ = [
    "MAJOR",
    "MINOR",
    "RULES",
    "Attempt",
    "CallbackVerdict",
    "Evaluation",
    "Finding",
    "IncidentFacts",
    "MonthlyIndicators",
    "NonconformityState",
    "Policy",
    "Ratio",
    "ResolutionOutcome",
    "SampleResult",
    "SampleRule",
    "StratumReport",
    "SurveyAnswer",
    "evaluate_incident",
    "facts_as_of",
    "monthly_indicators",
    "normalise_score",
    "policy_default",
    "raised_at",
    "round_half_up",
    "seen_at",
    "stratified_sample",
    "stratum_sample_size",
    "whole_second",
]
