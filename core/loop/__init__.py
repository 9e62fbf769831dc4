"""The loop of SPEC §3, one importable function per step.

Each step takes a :class:`core.runtime.Runtime` and plain names; running a
step again changes nothing that is already done.
"""

from core.loop.collect import collect
from core.loop.evaluate import evaluate
from core.loop.nonconformities import raise_nonconformities
from core.loop.plan import plan
from core.loop.pull import pull
from core.loop.push import push
from core.loop.reconcile import reconcile
from core.loop.run import RunSummary, run_once
from core.loop.sample import sample_surveys
from core.loop.track import track

__all__ = [
    "RunSummary",
    "collect",
    "evaluate",
    "plan",
    "pull",
    "push",
    "raise_nonconformities",
    "reconcile",
    "run_once",
    "sample_surveys",
    "track",
]
