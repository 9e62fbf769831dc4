"""Jira Service Management Cloud source (``type: jira_sm``).

Pulls incidents by ``updated`` through ``/rest/api/3/search/jql`` with a
cursor that cannot skip or duplicate, reads full status histories, JSM SLA
cycles and the customer contact, and writes nonconformity tickets back
exactly once. Modules: :mod:`.options` (schema), :mod:`.client` (REST
calls, paged by the kit), :mod:`.search` (JQL), :mod:`.issues`
(raw dict and mapping), :mod:`.pull` (on the kit's driver), :mod:`.tickets`,
:mod:`.source`.
"""

from __future__ import annotations

from connectors.jira_sm.options import OPTIONS_SCHEMA
from connectors.jira_sm.source import JiraSource
from core.registry import register

register("source", "jira_sm", JiraSource, OPTIONS_SCHEMA, mapping="jira_sm")

__all__ = ["OPTIONS_SCHEMA", "JiraSource"]
