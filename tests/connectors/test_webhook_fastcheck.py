"""The compiled schema check says "valid" exactly when jsonschema does; errors stay
jsonschema's own."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mappings
from connectors.webhook import payloads
from connectors.webhook.fastcheck import compile_check
from core.errors import InputError
from core.records import Contact, OutboundMessage

INSTANTS = [
    "2026-10-05T03:04:05Z",
    "2026-10-05T03:04:05.123456789+08:00",
    "2026-10-05T03:04:05.1234567890Z",  # ten decimals: too many
    "2026-10-05T03:04:05Z\n",  # "$" matches before a final newline, for both
    "٢٠٢٦-10-05T03:04:05Z",  # Arabic-Indic digits are \d in Python's re, for both
    "2026-10-05",
    "",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 1001)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        [*INSTANTS, "outcome.reported", "outcome.batch", "callback_attempt", "survey_answer"]
    )
    | st.text(max_size=6)
    | st.text(min_size=60, max_size=70)
    | st.text(min_size=195, max_size=205),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)

OUTCOME_KEYS = [
    "id",
    "kind",
    "occurred_at",
    "correlation_token",
    "idempotency_key",
    "provider_ref",
    "contact",
    "reached",
    "confirmed",
    "score",
    "scale",
    "comment",
    "agent",
    "result",
    "extra",
    "unknown",
]


def _valid_outcome(n: int) -> dict[str, Any]:
    return {
        "id": f"evt-{n}",
        "kind": "callback_attempt" if n % 2 else "survey_answer",
        "occurred_at": "2026-10-05T03:04:05+08:00",
        "correlation_token": "tok",
        "reached": True,
        "confirmed": None,
        "score": 4.5,
        "scale": [1, 5],
        "contact": {"name": "A", "phone": "+86 138", "email": None},
        "extra": {"x": [1, 2]},
    }


def _valid_task() -> dict[str, Any]:
    message = OutboundMessage(
        kind="callback",
        idempotency_key="cb:jira:INC-1:1",
        correlation_token="tok-abcdefgh-1",
        source="jira",
        incident_external_id="10001",
        incident_key="INC-1",
        title="Printer down",
        priority="P2",
        contact=Contact("A", "+86 138 0000 0000", "a@example.com"),
        resolved_at=datetime(2026, 10, 5, 3, 4, 5, tzinfo=UTC),
        due_at=datetime(2026, 10, 6, 3, 4, 5, tzinfo=UTC),
    )
    return payloads.task_payload(
        message, datetime(2026, 10, 5, tzinfo=UTC), mappings.load("webhook")
    )


VALID = {
    "outcome": [
        {"type": "outcome.reported", "timestamp": INSTANTS[0], "data": _valid_outcome(1)},
        {
            "type": "outcome.batch",
            "timestamp": INSTANTS[1],
            "data": {"outcomes": [_valid_outcome(n) for n in range(3)]},
            "cursor": "c1",
            "has_more": False,
        },
    ],
    "task": [_valid_task()],
}


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``doc`` a mutation can touch: the containers' items."""
    found = [at]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*at, key))
    elif isinstance(doc, list):
        for n, value in enumerate(doc):
            found += _paths(value, (*at, n))
    return found


@st.composite
def mutated(draw: st.DrawFn, name: str) -> Any:
    """A valid document of schema ``name`` with a few values replaced, removed or added."""
    doc = copy.deepcopy(draw(st.sampled_from(VALID[name])))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(OUTCOME_KEYS))] = draw(json_values)
        else:
            parent.append(draw(json_values))
    return doc


def _jsonschema_valid(name: payloads.SchemaName, doc: Any) -> bool:
    return bool(jsonschema.Draft202012Validator(payloads.schema(name)).is_valid(doc))


@pytest.mark.parametrize("name", ["outcome", "task"])
def test_the_published_schemas_compile_and_accept_their_valid_documents(name: str) -> None:
    check = compile_check(payloads.schema(name))
    assert check is not None
    for doc in VALID[name]:
        assert _jsonschema_valid(name, doc)  # type: ignore[arg-type]
        assert check(doc)


@given(st.data())
@settings(max_examples=600, deadline=None)
def test_same_verdict_as_jsonschema_on_changed_documents(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["outcome", "task"]))
    doc = data.draw(mutated(name) | json_values)
    check = compile_check(payloads.schema(name))
    assert check is not None
    assert check(doc) == _jsonschema_valid(name, doc)


SMALL_SCHEMAS: list[dict[str, Any]] = [
    {"type": "integer"},
    {"type": ["number", "null"], "not": {"const": "x"}},
    {"oneOf": [{"type": "number"}, {"type": "integer"}]},
    {"anyOf": [{"type": "string", "minLength": 2}, {"type": "boolean"}]},
    {"if": {"type": "string"}, "then": {"maxLength": 1}, "else": {"type": "array", "minItems": 1}},
    {"items": {"$ref": "#"}, "type": ["array", "integer"], "maxItems": 2},
    {
        "properties": {"a": {"$ref": "#/$defs/a~1b"}},
        "additionalProperties": {"type": "integer"},
        "required": ["a"],
        "$defs": {"a/b": {"enum": ["x", "y"]}},
    },
]


@given(st.sampled_from(SMALL_SCHEMAS), json_values)
@settings(max_examples=400, deadline=None)
def test_same_verdict_as_jsonschema_on_each_keyword(schema: dict[str, Any], doc: Any) -> None:
    check = compile_check(schema)
    assert check is not None
    assert check(doc) == jsonschema.Draft202012Validator(schema).is_valid(doc)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "format": "date-time"},
        {"patternProperties": {"^x": {}}, "additionalProperties": False},
        {"$ref": "https://example.com/other.json"},
        {"$ref": "#/$defs/missing"},
        {"enum": [1, "one"]},
        {"prefixItems": [{}], "items": False},
        {"properties": {"a": {"$id": "https://example.com/a", "type": "string"}}},
        {"unevaluatedProperties": False},
    ],
)
def test_a_schema_with_anything_else_is_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert compile_check(schema) is None


def test_valid_deliveries_skip_jsonschema_and_invalid_ones_get_its_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = payloads._validator
    calls: list[str] = []

    def counted(name: payloads.SchemaName) -> jsonschema.Draft202012Validator:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(payloads, "_validator", counted)
    payloads.validate("outcome", VALID["outcome"][0], "delivery d1")
    assert calls == []
    bad = copy.deepcopy(VALID["outcome"][1])
    bad["data"]["outcomes"][2]["kind"] = "visit"
    with pytest.raises(InputError) as caught:
        payloads.validate("outcome", bad, "delivery d2")
    assert calls == ["outcome"]
    assert caught.value.field == "$.data.outcomes[2].kind"
    assert "'visit' is not one of ['callback_attempt', 'survey_answer']" in str(caught.value)
