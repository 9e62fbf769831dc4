"""The README's commands are commands qloop has, on files that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from api.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    fenced = False
    for raw in text.splitlines():
        if raw.startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or raw.startswith("    ")):
            continue  # prose, not a command line
        line = raw.split("#", 1)[0].strip()
        match = re.match(r"^(?:\.venv/bin/)?qloop\s+(.*)$", line)
        if match:
            commands.append(shlex.split(match.group(1).replace("…", "x").replace("|", " ")))
    return commands


def test_every_readme_command_parses() -> None:
    commands = _readme_commands()
    assert len(commands) >= 10
    parser = build_parser()
    for argv in commands:
        parser.parse_args([a.strip("[]") for a in argv if a.strip("[]")])


def test_readme_points_only_at_files_of_the_repository() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "my.yaml" not in text
    assert "../" not in text
    assert "later)" not in text
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    for name in re.findall(
        r"`((?:config|docs|mappings)/[A-Za-z0-9_./-]+\.(?:yaml|json|md))`", text
    ):
        assert (ROOT / name).exists(), name
