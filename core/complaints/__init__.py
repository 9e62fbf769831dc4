"""Complaints (R5, issue 12 item 2): raised, sent to the team, followed, called back, reported.

- :func:`raise_complaints` finds new complaints (major nonconformities,
  incidents or answers their mapping flags) and queues their tickets;
- :func:`follow_complaints` follows each one's ticket (root cause and
  rectification read back), plans the follow-up call once its ticket is
  closed, records the call's outcome and escalates past the deadline;
- :func:`complaint_report` is the period's complaint report.
"""

from core.complaints.following import FOLLOW_UP, NOTICE, follow_complaints
from core.complaints.raising import TICKET, raise_complaints
from core.complaints.report import ComplaintReport, ComplaintRow, complaint_report

PUSHED = (TICKET, FOLLOW_UP)
"""Outbox kinds of complaints that the push step sends (notices go through ``workers``)."""

__all__ = [
    "FOLLOW_UP",
    "NOTICE",
    "PUSHED",
    "TICKET",
    "ComplaintReport",
    "ComplaintRow",
    "complaint_report",
    "follow_complaints",
    "raise_complaints",
]
