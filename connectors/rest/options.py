"""Options of the ``rest`` source: their JSON Schema (validated once, at config load)."""

from __future__ import annotations

from typing import Any

from connectors.http import http_options_schema
from connectors.kit.child import PULL_PROCESS_SCHEMA
from connectors.kit.paging import PAGINATOR_TYPES

_TEXT = {"type": "string", "minLength": 1}
_PATH = {"type": "string", "description": "dotted path in the JSON answer ($: the answer itself)"}


def _call(what: str, **extra: Any) -> dict[str, Any]:
    """The schema of one configured HTTP call (see connectors/rest/calls.py)."""
    return {
        "type": "object",
        "description": what,
        "additionalProperties": False,
        "required": ["path"],
        "properties": {
            "method": {"enum": ["GET", "POST", "PUT", "PATCH"], "default": "GET",
                       "description": "HTTP method"},
            "path": {**_TEXT, "description": "path under base_url (or absolute URL); "
                     "{placeholders} allowed"},
            "params": {"type": "object", "description": "query parameters ({placeholders})"},
            "json": {"description": "JSON body ({placeholders} in its strings)"},
            "form": {"type": "object", "description": "form body; an object value is sent "
                     "as its JSON text (iTop's json_data)"},
            **extra,
        },
    }  # fmt: skip


AUTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "how every request is signed (connectors/kit/auth.py)",
    "required": ["scheme"],
    "additionalProperties": False,
    "properties": {
        "scheme": {"enum": ["basic", "bearer", "api_key", "oauth2", "session"],
                   "description": "basic, bearer, api_key (header or query), oauth2 "
                   "(client_credentials or password grant), session (login/logout)"},
        "username": {**_TEXT, "description": "basic, oauth2 password grant"},
        "password": {**_TEXT, "description": "basic, oauth2 password grant (environment)"},
        "token": {**_TEXT, "description": "bearer: the token (environment)"},
        "key": {**_TEXT, "description": "api_key: the key (environment)"},
        "header": {**_TEXT, "description": "api_key: header carrying the key; session: "
                   "header carrying the session token"},
        "query": {**_TEXT, "description": "api_key: query parameter carrying the key"},
        "prefix": {"type": "string", "description": "api_key: text before the key "
                   "(Zammad: 'Token token=')"},
        "token_url": {**_TEXT, "description": "oauth2: token endpoint"},
        "client_id": {**_TEXT, "description": "oauth2 client id"},
        "client_secret": {**_TEXT, "description": "oauth2 client secret (environment)"},
        "grant": {"enum": ["client_credentials", "password"], "description": "oauth2 grant"},
        "scope": {"type": "string", "description": "oauth2 scope"},
        "login_path": {**_TEXT, "description": "session: login endpoint"},
        "login_method": {"enum": ["GET", "POST"], "description": "session: login method"},
        "login_headers": {"type": "object", "description": "session: login headers"},
        "login_body": {"description": "session: login JSON body"},
        "token_path": {"type": "string", "description": "session: token in the login answer"},
        "logout_path": {"type": "string", "description": "session: logout endpoint"},
        "logout_method": {"enum": ["GET", "POST", "DELETE"], "description": "session: logout"},
        "headers": {"type": "object", "description": "session: headers sent on every request"},
    },
    "allOf": [
        {"if": {"properties": {"scheme": {"const": "basic"}}},
         "then": {"required": ["username", "password"]}},
        {"if": {"properties": {"scheme": {"const": "bearer"}}}, "then": {"required": ["token"]}},
        {"if": {"properties": {"scheme": {"const": "api_key"}}},
         "then": {"required": ["key"], "oneOf": [{"required": ["header"]},
                                                  {"required": ["query"]}]}},
        {"if": {"properties": {"scheme": {"const": "oauth2"}}},
         "then": {"required": ["token_url", "client_id", "client_secret"]}},
        {"if": {"properties": {"scheme": {"const": "session"}}},
         "then": {"required": ["login_path", "header"]}},
    ],
}  # fmt: skip

PAGINATOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "how the list is paged (connectors/kit/paging.py); the other keys are the "
    "paginator's own (page_param, size_param, base, total_pages_path, offset_param, "
    "limit_param, total_header, total_path, token_path, token_param, last_path, url_path, rel, "
    "param, header, unit, partial_status, size_header)",
    "required": ["type"],
    "properties": {
        "type": {"enum": list(PAGINATOR_TYPES), "description": "the paging strategy"},
        "size": {"type": "integer", "minimum": 1, "maximum": 10000,
                 "description": "records per page"},
        "in": {"enum": ["query", "body"], "default": "query",
               "description": "body: the paging values are not sent as query parameters but "
               "fill the list call's {placeholders} of the same names ({page}, {limit}…)"},
    },
}  # fmt: skip

SINCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "the 'updated since' filter: the instant is written as {since} in the list "
    "call (and sent as `param` when given); {until}, when the call has it, bounds a window "
    "of a windowed first sync (exclusive; records at or after it are dropped)",
    "additionalProperties": False,
    "properties": {
        "param": {**_TEXT, "description": "query parameter that takes the instant"},
        "format": {"type": "string", "default": "iso",
                   "description": "iso (2026-03-01T08:00:00Z), epoch, epoch_ms, or a strftime "
                   "pattern such as %Y-%m-%d %H:%M:%S"},
        "timezone": {"type": "string", "default": "UTC",
                     "description": "zone the tool reads the instant in (IANA name)"},
        "open": {"type": "string",
                 "description": "what {until} is written as when a pull has no upper bound "
                 "(Zammad's *); none: a day after now, in the same format"},
    },
}  # fmt: skip

_WITH_REFS = [{"required": [k], "properties": {k: {"$ref": "#/$defs/has_refs"}}}
              for k in ("path", "params", "json", "form")]  # fmt: skip


def _batch_call(what: str, required: list[str], **own: Any) -> dict[str, Any]:
    """The schema of a call that reads many tickets at once: {refs} is their ids joined by
    `separator`, `max_refs` at a time; each record names its ticket at `ticket`; ``own``
    are the call's other record paths (after `records` and `ticket`)."""
    return {
        **_call(
            what,
            records={**_PATH, "default": "$"},
            ticket={**_PATH, "description": "the ticket id in a record"},
            **own,
            separator={"type": "string", "minLength": 1, "default": ",",
                       "description": "between the ids in {refs}"},
            max_refs={"type": "integer", "minimum": 1, "maximum": 1000, "default": 50,
                      "description": "tickets per call (the URL's length, the tool's limit)"},
            paginator=PAGINATOR_SCHEMA,
        ),
        "required": ["path", "ticket", *required],
        "allOf": [{"anyOf": _WITH_REFS,
                   "errorMessage": "the call needs {refs} (the tickets' ids) in its path, "
                                   "params, json or form"}],
    }  # fmt: skip


COMMENTS_MANY_SCHEMA = _batch_call(
    "optional: lists the comments of many tickets in one call, so that following "
    "complaints reads a batch of tickets per call instead of one `comments` call per "
    "ticket; {refs} is their ids joined by `separator`. Each record is a comment "
    "(`ticket` names its ticket), or a ticket holding its comments at `entries`",
    [],
    entries={**_PATH, "description": "where a record (a ticket) holds its comments "
             "(none: each record is a comment)"},
    text={**_PATH, "description": "a comment's text (default: comments.text)"},
    at={**_PATH, "description": "when a comment was written (default: comments.at)"},
    ref={**_PATH, "description": "a comment's id: one seen twice across pages is "
         "kept once (default: comments.ref)"},
)  # fmt: skip

STATUS_MANY_SCHEMA = _batch_call(
    "optional: reads the states of many tickets in one call, so that the track step "
    "reads a batch of tickets per call instead of one `status` call per ticket; {refs} "
    "is their ids joined by `separator`. Each record is a ticket (`ticket` names it): "
    "its state at `field`, its closing time at `closed_at`, read as `status` reads its "
    "answer; a ticket the answer lacks is read with `status`",
    ["field"],
    field={**_PATH, "description": "the ticket's state in a record"},
    closed_at={**_PATH, "description": "when it was closed, in a record (needed when "
               "`status` has closed_at)"},
)  # fmt: skip

HAS_REFS: dict[str, Any] = {
    "description": "a string holding {refs}, or an object or list with one inside",
    "anyOf": [
        {"type": "string", "pattern": r"\{refs\}"},
        {"type": "object", "not": {"additionalProperties": {"not": {"$ref": "#/$defs/has_refs"}}}},
        {"type": "array", "contains": {"$ref": "#/$defs/has_refs"}},
    ],
}

OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "rest source options",
    "description": "a declarative REST source: any ticketing tool with a JSON API, in YAML. "
    "Records are mapped by the source's `mapping:` (record paths, status_map, priority_map, "
    "timezone; record.external_id and record.updated_at are required).",
    "type": "object",
    "$defs": {"has_refs": HAS_REFS},
    "additionalProperties": False,
    "required": ["base_url", "auth", "list"],
    "properties": {
        "base_url": {"type": "string", "pattern": "^https?://",
                     "description": "root of the tool's API, e.g. https://desk.example.com"},
        "auth": AUTH_SCHEMA,
        "headers": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "headers sent on every request"},
        "list": _call(
            "the list (search) call that returns incidents updated since an instant, oldest "
            "first; {since} is the instant (formatted by `since`)",
            records={**_PATH, "default": "$",
                     "description": "where the records sit in the answer (a list, or an object "
                     "of records keyed by id)"},
            paginator=PAGINATOR_SCHEMA,
            since=SINCE_SCHEMA,
            ordered={"type": "boolean", "default": True,
                     "description": "the list answers oldest update first (sort by updated); "
                     "false: the cursor moves only when a pull has read every page"},
        ),
        "history": _call(
            "optional: the status history read by its own call, placed in each record under "
            "`into` for the mapping's history section; {id} (per record) or {ids} (the page's "
            "ids, comma-separated: one call per page) in the call",
            records={**_PATH, "default": "$", "description": "where the history rows sit"},
            key={**_PATH, "description": "with {ids}: the path in a row to its record's id"},
            where={"type": "object", "description": "keep only rows whose paths hold these "
                   "values ({attribute: state})"},
            into={"type": "string", "default": "history",
                  "description": "key of the rows in each record"},
        ),
        "own": {
            "type": "object", "additionalProperties": False, "required": ["path"],
            "description": "qloop's own tickets, left out of the pull: the field holding the "
                           "dedup marker qloop writes ({marker} in ticket.create)",
            "properties": {
                "path": {**_PATH, "description": "the field in a record"},
                "contains": {**_TEXT, "default": "qloop:",
                             "description": "a record whose field contains this is qloop's"},
            },
        },
        "count": {
            "type": "object", "additionalProperties": False,
            "description": "the tool's count of a first sync's scope, read from the list call's "
                           "first page (with params merged, json or form replaced)",
            "properties": {
                "params": {"type": "object", "description": "query parameters over the list's"},
                "json": {"description": "JSON body instead of the list's"},
                "form": {"type": "object", "description": "form body instead of the list's"},
                "path": {**_PATH, "description": "the count in the answer"},
                "header": {**_TEXT, "description": "or the header holding it (X-Total-Count)"},
                "pattern": {**_TEXT, "description": "regular expression whose first group is "
                            "the count in the value read (iTop: 'Found: (\\d+)')"},
            },
            "oneOf": [{"required": ["path"]}, {"required": ["header"]}],
        },
        "ticket": {
            "type": "object", "additionalProperties": False,
            "required": ["create", "find", "status"],
            "dependentRequired": {"comments_many": ["comments"]},
            "if": {"required": ["status_many", "status"],
                   "properties": {"status": {"required": ["closed_at"]}}},
            "then": {"properties": {"status_many": {
                "required": ["closed_at"],
                "errorMessage": "status has closed_at: status_many needs closed_at too (where "
                                "a record holds it), or the batch would read no closing time"}}},
            "description": "write-back of nonconformity tickets (none: not pushed here); "
                           "comment and resolve are needed by a policy whose findings change "
                           "or are withdrawn. Placeholders: {title} {description} {dedup_key} "
                           "{marker} {rule} {severity} {incident_key} {incident_external_id} "
                           "{raised_at} {deadline} {labels}",
            "properties": {
                "create": _call("creates a ticket carrying {marker}",
                                ref={**_PATH, "description": "the new ticket's id in the answer"},
                                url={"type": "string", "description": "link to the ticket; {ref}"}),
                "find": _call("looks a ticket up by {marker} (before creating, and after a create "
                              "whose answer was lost): never two tickets",
                              records={**_PATH, "default": "$"},
                              ref={**_PATH, "description": "the ticket's id in a found record"}),
                "status": _call("reads ticket {ref}",
                                field={**_PATH, "description": "its state in the answer"},
                                closed={"type": "array", "items": {"type": "string"},
                                        "description": "states that mean done"},
                                closed_at={**_PATH, "description": "when it was closed"}),
                "comment": _call("adds a comment to ticket {ref} (a changed or withdrawn "
                                 "finding): {text} ends with its {marker}; {key} {plain}",
                                 ref={**_PATH, "description": "the comment's id in the answer "
                                      "(none: the marker stands for it)"}),
                "comments": _call("lists ticket {ref}'s comments, so a comment whose text "
                                  "holds its {marker} is never written twice; with only "
                                  "{ref} in it, also how complaints read a ticket's "
                                  "comments back (one call per ticket)",
                                  records={**_PATH, "default": "$"},
                                  text={**_PATH, "default": "body",
                                        "description": "a comment's text in a record"},
                                  ref={**_PATH, "default": "id",
                                       "description": "a comment's id in a record"},
                                  at={**_PATH, "description": "when a comment was written "
                                      "(ISO 8601, epoch, or the mapping's timezone): "
                                      "comments are read oldest first by it (none: in "
                                      "the tool's order)"}),
                "comments_many": COMMENTS_MANY_SCHEMA,
                "status_many": STATUS_MANY_SCHEMA,
                "resolve": _call("resolves or closes ticket {ref} after its comment, unless "
                                 "the status call says it is done already; {text} {plain}"),
            },
        },
        "errors": {
            "type": "object", "additionalProperties": False, "required": ["path"],
            "description": "for tools that answer errors with HTTP 200: the status field of "
                           "every answer (iTop: code), its good values and the message",
            "properties": {
                "path": {**_PATH, "description": "the status in every answer"},
                "ok": {"type": "array", "default": [0], "description": "values that mean success"},
                "message": {**_PATH, "description": "the tool's error message"},
            },
        },
        "backfill_from": {"type": "string",
                          "description": "first sync: ISO 8601 instant to read from "
                          "(none: everything); with {until} in the list call, the first sync "
                          "reads [backfill_from, now) in backfill_parts windows at once"},
        "backfill_parts": {"type": "integer", "minimum": 1, "maximum": 256, "default": 8,
                           "description": "first sync with backfill_from and {until}: windows"},
        "backfill_workers": {"type": "integer", "minimum": 1, "maximum": 32, "default": 4,
                             "description": "first sync: windows pulled at the same time"},
        "overlap": {"type": ["string", "integer"], "default": "2m",
                    "description": "re-read this much before the watermark (e.g. 2m)"},
        **PULL_PROCESS_SCHEMA,
        **http_options_schema(default_rate=5),
    },
}  # fmt: skip
