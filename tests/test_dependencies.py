"""Every third-party import is declared in pyproject.toml and pinned in the lock files."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "connectors", "api", "workers")
FIRST_PARTY = {*PACKAGES, "config", "mappings"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert match, spec
    return _norm(match.group(1))


def _pins(lock: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in (ROOT / lock).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-r "):
            continue
        name, sep, version = line.partition("==")
        assert sep and version.strip(), f"{lock}: {raw!r} is not an exact pin (name==version)"
        pins[_norm(name)] = version.strip()
    return pins


def _imports() -> dict[str, set[str]]:
    """Top-level modules imported by the shipped packages -> the files importing them."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _project() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        "runtime": [_requirement_name(d) for d in project["dependencies"]],
        "dev": [_requirement_name(d) for d in project["optional-dependencies"]["dev"]],
    }


def test_every_third_party_import_is_declared_and_pinned() -> None:
    declared = set(_project()["runtime"])
    pinned = _pins("requirements.lock")
    dists = packages_distributions()
    problems = []
    for module, files in sorted(_imports().items()):
        if module in FIRST_PARTY or module in sys.stdlib_module_names or module == "__future__":
            continue
        names = {_norm(d) for d in dists.get(module, [])}
        where = ", ".join(sorted(files)[:3])
        if not names:
            problems.append(f"{module} (imported by {where}) is not installed")
        elif not names & declared:
            problems.append(f"{module} ({'/'.join(sorted(names))}, in {where}) not in dependencies")
        elif not names & set(pinned):
            problems.append(f"{module} ({'/'.join(sorted(names))}) not pinned in requirements.lock")
    assert problems == []


def test_declared_dependencies_are_pinned_in_the_lock_files() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    project = _project()
    assert [d for d in project["runtime"] if d not in runtime] == []
    assert [d for d in project["dev"] if d not in dev and d not in runtime] == []
    assert set(runtime).isdisjoint(dev), "a package pinned in both lock files"
    assert "-r requirements.lock" in (ROOT / "requirements-dev.lock").read_text()


def test_make_installs_from_the_lock_files() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    stamp = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE)
    assert stamp is not None
    assert set(stamp.group(1).split()) >= {
        "pyproject.toml",
        "requirements.lock",
        "requirements-dev.lock",
    }
    assert "pip install --quiet -r requirements-dev.lock" in makefile
    assert "pip install --quiet --no-deps -e ." in makefile
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "pip install -r requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
