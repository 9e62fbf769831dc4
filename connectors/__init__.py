"""Connector implementations; importing this package registers every built-in type.

Add a new connector type by appending its module to the import below.
"""

from connectors import (  # noqa: F401  (register on import)
    glpi,
    jira_sm,
    limesurvey,
    sandbox,
    servicenow,
    twilio,
    webhook,
)
