"""The campaigns: block: defaults, and problems named with their key."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.compliance import stratified_sample
from core.conf import load_config
from core.errors import ConfigError, InputError
from tests.utils.loop import sandbox_config


def _write(tmp_path: Path, campaign: dict[str, Any]) -> Path:
    path = sandbox_config("sqlite:///" + str(tmp_path / "q.db"), tmp_path, incidents=3)
    doc = yaml.safe_load(path.read_text("utf-8"))
    doc["campaigns"] = {"annual": campaign}
    path.write_text(yaml.safe_dump(doc), "utf-8")
    return path


def test_a_campaign_gets_its_defaults(tmp_path: Path) -> None:
    cfg = load_config(
        _write(
            tmp_path,
            {"window": {"from": "2026-01-01", "to": "2026-12-31"}, "channel": "survey-mail"},
        )
    )
    camp = cfg.campaigns["annual"]
    assert (camp.window_from, camp.window_to) == (date(2026, 1, 1), date(2026, 12, 31))
    assert camp.strata == ("customer", "service", "priority")
    assert (camp.rate, camp.min_per_stratum, camp.cool_off_days) == (0.1, 1, 180)
    assert (camp.reminders.every_days, camp.reminders.max_count) == (7, 2)
    assert camp.survey_id is None
    assert (camp.items, camp.comments, camp.previous) == ((), (), None)


def test_campaign_items_map_answer_codes(tmp_path: Path) -> None:
    window = {"from": "2026-01-01", "to": "2026-12-31"}
    items = {
        "overall": {"question": "SAT", "scale": [0, 10]},
        "speed": {"question": "Q2", "values": {"A1": 1, "A5": 5}},
        "resolved": {"question": "CONF", "yes_codes": ["Y", "A1"]},
    }
    cfg = load_config(
        _write(tmp_path, {"window": window, "channel": "survey-mail", "items": items})
    )
    by_name = {i.name: i for i in cfg.campaigns["annual"].items}
    overall, speed, resolved = by_name["overall"], by_name["speed"], by_name["resolved"]
    assert (overall.value("7"), overall.value("11"), overall.value("x")) == (7.0, None, None)
    assert (speed.value("A5"), speed.value("A3"), speed.value(" ")) == (5.0, None, None)
    assert (resolved.value("A1"), resolved.value("N"), resolved.value("?")) == (1.0, 0.0, None)


@pytest.mark.parametrize(
    ("campaign", "problem"),
    [
        (
            {"window": {"from": "2026-12-01", "to": "2026-01-31"}, "channel": "survey-mail"},
            "campaigns.annual.window.to: the window ends before it starts",
        ),
        (
            {"window": {"from": "2026-01-01", "to": "2026-01-31"}, "channel": "nope"},
            "campaigns.annual.channel: channel 'nope' is not defined",
        ),
        (
            {
                "window": {"from": "2026-01-01", "to": "2026-01-31"},
                "channel": "survey-mail",
                "starts": "2026-03-01",
                "ends": "2026-02-01",
            },
            "campaigns.annual.ends: the campaign ends before it starts",
        ),
        (
            {"window": {"from": "2026-01-01", "to": "2026-02-30"}, "channel": "survey-mail"},
            "campaigns.annual.window.to: '2026-02-30' is not a valid date",
        ),
        (
            {"window": {"from": "2026-01-01"}, "channel": "survey-mail", "rate": 0},
            "campaigns.annual.window",
        ),
        (
            {
                "window": {"from": "2026-01-01", "to": "2026-01-31"},
                "channel": "survey-mail",
                "items": {"overall": {"question": "SAT", "scale": [5, 1]}},
            },
            "campaigns.annual.items.overall.scale: min must be below max",
        ),
        (
            {
                "window": {"from": "2026-01-01", "to": "2026-01-31"},
                "channel": "survey-mail",
                "items": {"overall": {"scale": [1, 5]}},
            },
            "campaigns.annual.items.overall",
        ),
    ],
)
def test_bad_campaigns_are_named(tmp_path: Path, campaign: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, campaign))
    assert problem in str(err.value)


def test_minimum_per_stratum_raises_small_picks_only() -> None:
    population = [(f"a{i}", ("a",)) for i in range(50)] + [(f"b{i}", ("b",)) for i in range(4)]
    drawn = stratified_sample(population, 0.05, "s", minimum=3)
    sizes = {r.stratum: r.picked for r in drawn.strata}
    assert sizes == {("a",): 3, ("b",): 3}  # 0.05 x 50 = 2.5 -> 3; 0.05 x 4 -> 1, raised to 3
    drawn = stratified_sample(population, 0.2, "s", minimum=3)
    assert {r.stratum: r.picked for r in drawn.strata} == {("a",): 10, ("b",): 3}
    assert stratified_sample(population[:2], 1.0, "s", minimum=5).strata[0].picked == 2
    assert stratified_sample(population, 0.0, "s", minimum=3).picked == frozenset()
    with pytest.raises(InputError, match="minimum per stratum"):
        stratified_sample(population, 0.5, "s", minimum=0)
