"""``qloop sources test`` for GLPI: what each failure means, in the operator's terms.

The probe calls endpoints GLPI's legacy REST API documents (``apirest.md``):
``initSession``, ``getFullSession``, ``getMyProfiles``, ``getActiveEntities``
and ``search/Ticket`` (with explicit criteria, live and trash). A failure is
explained by GLPI's own error code when it sends one, else by the HTTP
status or the transport error: 401 credentials, 403 rights, 404 base URL,
TLS the CA bundle, no connection the host, port or proxy.
"""

from __future__ import annotations

from connectors.glpi.session import HINTS, error_code
from core.errors import ConnectorError

STATUS_HINTS = {
    400: "GLPI refused the request: is the REST API enabled (Setup > General > API)?",
    401: "credentials refused: check user_token (or username/password) and app_token",
    403: "forbidden: the API user's profile lacks a right (Assistance > Tickets: see all)",
    404: "not found: base_url must be GLPI's legacy API root, ending in /apirest.php",
}


def hint(exc: ConnectorError) -> str | None:
    """What to fix for ``exc``: GLPI's error code first, then the transport, then the status."""
    text = str(exc)
    code = error_code(exc)
    if code in HINTS:
        return HINTS[code]
    if "API disabled" in text:
        return "the REST API is disabled: enable it in Setup > General > API"
    if "TLS error" in text:
        return (
            "the server's certificate is not trusted: set verify_tls to the path of the CA "
            "bundle (PEM) that issued it, or fix the server's certificate chain"
        )
    if "cannot connect" in text:
        return "cannot reach the server: check base_url's host and port, DNS, proxy or firewall"
    if "timed out" in text:
        return "the server did not answer in time: check the network path or raise timeout"
    return STATUS_HINTS.get(exc.status) if exc.status is not None else None


def explain(name: str, what: str, exc: ConnectorError) -> str:
    """``name: what failed: cause (hint)`` for a probe failure (secrets never quoted)."""
    found = hint(exc)
    return f"{name}: {what} failed: {exc}" + (f" — {found}" if found else "")
