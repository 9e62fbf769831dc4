"""``qloop recompute``: a past period re-evaluated, and what changed and why (issue 11 item 3)."""

from core.recompute.diff import Change, Recompute, recompute_period
from core.recompute.render import diff_csv, diff_json, diff_text
from core.recompute.store import apply_recompute

__all__ = [
    "Change",
    "Recompute",
    "apply_recompute",
    "diff_csv",
    "diff_json",
    "diff_text",
    "recompute_period",
]
