"""Complaints (R5, issue 12 item 2): raised, sent to the team, followed, called back, reported.

- :func:`core.complaints.raising.raise_complaints` finds new complaints (major
  nonconformities, incidents or answers their mapping flags) and queues
  their tickets;
- :func:`core.complaints.following.follow_complaints` follows each one's
  ticket (root cause and rectification read back), plans the follow-up call
  once its ticket is closed, records the call's outcome and escalates past
  the deadline;
- :func:`core.complaints.report.complaint_report` is the period's complaint
  report (imported from its module: it uses :mod:`core.report`, which uses
  the loop).
"""

from core.complaints.following import FOLLOW_UP, NOTICE, PUSHED, follow_complaints
from core.complaints.raising import TICKET, raise_complaints

__all__ = ["FOLLOW_UP", "NOTICE", "PUSHED", "TICKET", "follow_complaints", "raise_complaints"]
