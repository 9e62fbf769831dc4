"""Load a worked example of the ``rest`` source (config/examples/) pointed at a fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

import connectors.rest  # noqa: F401  registers the type
import mappings
from connectors.rest import RestSource, rest_source
from core.connector import ConnectorContext
from core.mapping import merge_mapping
from tests.utils.loop import Deployment

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"


def _fill(node: Any, env: dict[str, str]) -> Any:
    """``${VAR}`` / ``${VAR:-default}`` of the example replaced from ``env`` (tests only)."""
    if isinstance(node, str):
        for name, value in env.items():
            node = node.replace("${" + name + "}", value)
            start = "${" + name + ":-"
            while start in node:
                head, _, rest = node.partition(start)
                node = head + value + rest.partition("}")[2]
        return node
    if isinstance(node, dict):
        return {k: _fill(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, env) for v in node]
    return node


def example(name: str, env: dict[str, str]) -> dict[str, Any]:
    text = (EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8")
    return dict(_fill(yaml.safe_load(text), env))


def deployment(name: str, env: dict[str, str], database_url: str, tmp_path: Path) -> Deployment:
    doc = example(name, env)
    doc["database_url"] = database_url
    doc["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "qloop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return Deployment(path)


def source(name: str, env: dict[str, str], tmp_path: Path, **extra: Any) -> RestSource:
    doc = example(name, env)
    block = {**doc["sources"][name], **extra}
    mapping = merge_mapping(mappings.load("rest"), block.pop("mapping", {}))
    for key in ("type", "policy", "schedule", "tracking_from", "enabled"):
        block.pop(key, None)
    ctx = ConnectorContext(tmp_path, mapping, sleep=lambda s: None)
    return rest_source(name, block, ctx)
