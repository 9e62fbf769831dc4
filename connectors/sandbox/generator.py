"""Deterministic generator of realistic incidents in the sandbox ITSM's raw JSON shape.

One record looks like::

    {"id": "10023", "key": "SBX-24",
     "fields": {"summary": "VPN 频繁断线", "description": "...",
                "status": {"name": "Resolved"}, "priority": {"name": "High"},
                "service": {"id": "svc-2", "name": "Network & VPN"},
                "organization": {"id": "org-1", "name": "华东电力集团"},
                "reporter": {"displayName": "李娜", "emailAddress": "li.na@hdpower.cn",
                             "phone": "+8613812345678"},
                "assignee": {"displayName": "陈刚"},
                "created": "2026-10-03T09:12:44+08:00", "updated": "...",
                "resolutiondate": "..." | None,
                "sla": {"response_met": true, "resolution_met": false}},
     "changelog": [{"at": "2026-10-03T09:12:44+08:00", "status": "Open"}, ...]}

Raw statuses: Open, In Progress, Waiting for customer, Resolved, Closed,
Cancelled; priorities Highest/High/Medium/Low (P1..P4). The changelog is the
full, future included, history; :func:`view_as_of` shows it as the ITSM
would at an instant. The ``sla`` flags are the tool's own verdicts on a
plain Mon–Fri 09:00–18:00 calendar (no holidays), and about 3% of them are
deliberately wrong, as real tools are. About 3% carry ``"labels":
["complaint"]`` in ``fields``: the customer complained (the sandbox
mapping's ``complaint.flag``).
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sandbox.remote import unit
from core.timeutil import parse_month

COMPLAINT_RATE = 0.03
"""Share of incidents the sandbox ITSM labels ``complaint`` (the customer complained)."""

DAY, OPEN_S, CLOSE_S, HOUR = 86_400, 9 * 3600, 18 * 3600, 3600
BUSINESS_DAY = CLOSE_S - OPEN_S
PRIORITY_NAMES = {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low"}
RESPONSE_TARGET = {"P1": 900, "P2": 1800, "P3": 4 * HOUR, "P4": BUSINESS_DAY}
RESOLUTION_TARGET = {"P1": 4 * HOUR, "P2": 8 * HOUR, "P3": 3 * BUSINESS_DAY, "P4": 5 * BUSINESS_DAY}
_PRIORITY_CUM = ((0.05, "P1"), (0.20, "P2"), (0.70, "P3"), (1.0, "P4"))

CUSTOMERS = (  # (name, e-mail domain, weight)
    ("华东电力集团", "hdpower.cn", 18),
    ("Shenzhen Metro Operations", "szmetro-ops.com", 14),
    ("瑞丰银行", "ruifengbank.com.cn", 16),
    ("Northwind Logistics", "northwind.example.com", 10),
    ("中科智造", "zkzz.cn", 12),
    ("Golden Bay Hotels", "goldenbay.example.com", 8),
    ("上海市第六人民医院", "sh6h.org.cn", 12),
    ("Apex Retail China", "apexretail.cn", 10),
)
SERVICES = (  # (name, weight, summaries)
    ("Email & Collaboration", 20, "Outlook 无法收发邮件|Mailbox quota exceeded|邮件发送延迟|"
     "Shared calendar not syncing|Teams 会议无法加入"),
    ("Network & VPN", 22, "VPN 频繁断线|Wi-Fi unstable on 3rd floor|无法访问内网系统|"
     "Branch office link down|DNS resolution slow"),
    ("Desktop Support", 25, "电脑蓝屏|Printer offline|Laptop will not boot|软件安装申请|"
     "Monitor flickering|键盘鼠标无响应"),
    ("ERP (SAP)", 13, "SAP 登录报错|Purchase order stuck in approval|财务月结报表出错|"
     "SAP GUI crashes on export"),
    ("Data Center Hosting", 8, "服务器 CPU 告警|Backup job failed|存储空间不足|VM not reachable"),
    ("Identity & Access", 12, "账号被锁定|Password reset request|MFA token lost|新员工账号开通|"
     "Access to shared drive denied"),
)  # fmt: skip
SUMMARIES = tuple(tuple(summaries.split("|")) for _, _, summaries in SERVICES)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((a, b) for a, _, b in (w.partition(":") for w in text.split()))


SURNAMES = _pairs(
    "张:zhang 王:wang 李:li 刘:liu 陈:chen 杨:yang 黄:huang 赵:zhao 吴:wu 周:zhou "
    "徐:xu 孙:sun 马:ma 朱:zhu 胡:hu 郭:guo"
)
GIVEN = _pairs(
    "伟:wei 娜:na 芳:fang 敏:min 静:jing 强:qiang 磊:lei 洋:yang 艳:yan 勇:yong 军:jun "
    "杰:jie 娟:juan 涛:tao 明:ming 超:chao 秀英:xiuying 建华:jianhua 晓燕:xiaoyan"
)
LATIN_FIRST = _words("Emily James Sophie Daniel Olivia Lucas Grace Henry Chloe Ryan Mia Kevin")
LATIN_LAST = _words("Chen Wong Smith Müller Garcia Tan Lee Brown Lam Dubois")
MOBILE_PREFIXES = _words("130 131 132 135 136 137 138 139 150 152 158 159 176 177 186 187 188 189")


def chinese_name(rng: random.Random) -> tuple[str, str]:
    """A Chinese full name and its pinyin ``given.surname`` e-mail local part."""
    (s, sp), (g, gp) = rng.choice(SURNAMES), rng.choice(GIVEN)
    return s + g, f"{gp}.{sp}"


def mobile(rng: random.Random) -> str:
    """A Chinese mobile number in E.164 (+86 1xx xxxx xxxx, without spaces)."""
    return f"+86{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"


def _people(rng: random.Random, domains: list[str]) -> list[list[dict[str, Any]]]:
    """Contacts per customer (10–20 each): ~2% unreachable, ~10% phone only, ~8% mail only."""
    sizes = [rng.randint(10, 20) for _ in domains]
    total = sum(sizes)
    reach = ["none"] * max(2, round(total * 0.02)) + ["phone"] * round(total * 0.10)
    reach += ["email"] * round(total * 0.08)
    reach += ["both"] * (total - len(reach))
    rng.shuffle(reach)
    pools: list[list[dict[str, Any]]] = []
    for domain, size in zip(domains, sizes, strict=True):
        pool = []
        for _ in range(size):
            if rng.random() < 0.72:
                name, local = chinese_name(rng)
                local = name if rng.random() < 0.12 else local  # 李娜@example.cn
            else:
                first, last = rng.choice(LATIN_FIRST), rng.choice(LATIN_LAST)
                name, local = f"{first} {last}", f"{first}.{last}".lower().replace("ü", "ue")
            how = reach.pop()
            pool.append(
                {
                    "displayName": name,
                    "emailAddress": f"{local}@{domain}" if how in ("both", "email") else None,
                    "phone": mobile(rng) if how in ("both", "phone") else None,
                }
            )
        pools.append(pool)
    return pools


class _Calendar:
    """Mon–Fri 09:00–18:00 on integer local seconds since a month's first midnight."""

    def __init__(self, first_weekday: int) -> None:
        self.wd0 = first_weekday

    def workday(self, day: int) -> bool:
        return (self.wd0 + day) % 7 < 5

    def add(self, t: int, secs: int) -> int:
        """The instant ``secs`` business seconds after ``t``."""
        while True:
            day, s = divmod(t, DAY)
            if not self.workday(day) or s >= CLOSE_S:
                t = (day + 1) * DAY + OPEN_S
                continue
            if s < OPEN_S:
                t, s = day * DAY + OPEN_S, OPEN_S
            if secs <= CLOSE_S - s:
                return t + secs
            secs -= CLOSE_S - s
            t = (day + 1) * DAY + OPEN_S

    def between(self, a: int, b: int) -> int:
        """Business seconds in [a, b)."""
        total = 0
        for day in range(a // DAY, b // DAY + 1):
            if self.workday(day):
                lo, hi = max(a, day * DAY + OPEN_S), min(b, day * DAY + CLOSE_S)
                total += max(0, hi - lo)
        return total


def _work(cal: _Calendar, t: int, secs: int, around_clock: bool) -> int:
    return t + secs if around_clock else cal.add(t, secs)


def _lifecycle(
    rng: random.Random, cal: _Calendar, created: int, prio: str
) -> list[tuple[int, str]]:
    """Status changes ``(local seconds, raw status)`` of one incident, oldest first."""
    events = [(created, "Open")]
    fate, urgent = rng.random(), prio in ("P1", "P2")
    if fate < 0.03:  # cancelled
        t = created + rng.randint(600, 2 * DAY)
        if rng.random() < 0.5:
            events.append((t, "In Progress"))
            t += rng.randint(300, DAY)
        events.append((t, "Cancelled"))
        return events
    met = rng.random() >= 0.10
    f = rng.uniform(0.05, 0.95) if met else rng.uniform(1.1, 3.0)
    t = max(created + 60, _work(cal, created, int(RESPONSE_TARGET[prio] * f), urgent))
    events.append((t, "In Progress"))
    f = rng.uniform(0.15, 0.95) if rng.random() >= 0.15 else rng.uniform(1.05, 2.5)
    total = int(RESOLUTION_TARGET[prio] * f)
    spent = (t - created) if urgent else cal.between(created, t)
    remaining = max(300, total - spent)
    if rng.random() < 0.20:  # waiting for the customer somewhere in the middle
        part = int(remaining * rng.uniform(0.2, 0.8))
        t = _work(cal, t, part, urgent) + 60
        events.append((t, "Waiting for customer"))
        t += rng.choice((rng.randint(HOUR, 8 * HOUR), rng.randint(8 * HOUR, 3 * DAY)))
        events.append((t, "In Progress"))
        remaining -= part
    if fate < 0.045:  # stuck: never resolved
        return events
    t = _work(cal, t, remaining, urgent) + 60
    events.append((t, "Resolved"))
    if rng.random() < 0.05:  # reopened, then resolved again
        t += rng.randint(2 * HOUR, 3 * DAY)
        events.append((t, "In Progress"))
        t = _work(cal, t, rng.randint(HOUR, 8 * HOUR), urgent) + 60
        events.append((t, "Resolved"))
    if rng.random() < 0.85:  # auto-closed after a few days
        events.append((t + rng.randint(2 * DAY, 7 * DAY), "Closed"))
    return events


def _sla(cal: _Calendar, prio: str, events: list[tuple[int, str]]) -> dict[str, bool | None]:
    """The tool's own verdicts: business time, pauses while waiting, resolved/closed."""
    if events[-1][1] == "Cancelled":
        return {"response_met": None, "resolution_met": None}
    response_met = cal.between(events[0][0], events[1][0]) <= RESPONSE_TARGET[prio]
    final = max((i for i, (_, s) in enumerate(events) if s == "Resolved"), default=None)
    if final is None:
        return {"response_met": response_met, "resolution_met": None}
    spent = sum(
        cal.between(t, events[i + 1][0])
        for i, (t, s) in enumerate(events[:final])
        if s in ("Open", "In Progress")
    )
    return {"response_met": response_met, "resolution_met": spent <= RESOLUTION_TARGET[prio]}


def _created(rng: random.Random, cal: _Calendar, days: int, workdays: list[int]) -> int:
    if rng.random() < 0.85:  # office hours, busier in the morning
        hour_f = min(rng.triangular(0, 9, 2), 9 - 1 / 3600)
        return rng.choice(workdays) * DAY + OPEN_S + int(hour_f * 3600)
    while True:
        t = rng.randrange(days * DAY)
        day, s = divmod(t, DAY)
        if not cal.workday(day) or not OPEN_S <= s < CLOSE_S:
            return t


def generate_incidents(
    seed: str, month: str, count: int, tz: str = "Asia/Shanghai"
) -> list[dict[str, Any]]:
    """Generate ``count`` incidents created during ``month`` (``YYYY-MM``) in zone ``tz``.

    The result depends only on the arguments; customers and their contacts
    depend only on ``seed``, so they recur from month to month. Records are
    ordered by creation, with ids ``10000 + n`` and keys ``SBX-<n+1>``.
    A list of :func:`iter_incidents`; a large month should be streamed.
    """
    return list(iter_incidents(seed, month, count, tz))


def iter_incidents(
    seed: str, month: str, count: int, tz: str = "Asia/Shanghai"
) -> Iterator[dict[str, Any]]:
    """The incidents of :func:`generate_incidents`, one at a time.

    Only compact drafts (times, picks, lifecycle) of the whole month are held
    to order them by creation; each record is built as it is yielded.
    """
    year, mon = parse_month(month)
    zone, base = ZoneInfo(tz), datetime(year, mon, 1)
    nxt = datetime(year + (mon == 12), mon % 12 + 1, 1)
    days = (nxt - base).days
    cal = _Calendar(base.weekday())
    workdays = [d for d in range(days) if cal.workday(d)]
    pool_rng = random.Random(f"sandbox-pool|{seed}")
    people = _people(pool_rng, [domain for _, domain, _ in CUSTOMERS])
    engineers = [chinese_name(pool_rng)[0] for _ in range(14)]
    cust_cum = list(accumulate(w for _, _, w in CUSTOMERS))
    svc_cum = list(accumulate(w for _, w, _ in SERVICES))
    rng = random.Random(f"sandbox|{seed}|{month}|{count}")

    offsets = {zone.utcoffset(base + timedelta(hours=h)) for h in range(0, (days + 60) * 24, 6)}
    suffix = base.replace(tzinfo=zone).isoformat()[19:] if len(offsets) == 1 else ""

    def stamp(t: int) -> str:
        local = base + timedelta(seconds=t)
        return local.isoformat() + suffix if suffix else local.replace(tzinfo=zone).isoformat()

    drafts = []
    for _ in range(count):
        created = _created(rng, cal, days, workdays)
        r = rng.random()
        prio = next(p for bound, p in _PRIORITY_CUM if r < bound)
        c = bisect(cust_cum, rng.random() * cust_cum[-1])
        s = bisect(svc_cum, rng.random() * svc_cum[-1])
        events = _lifecycle(rng, cal, created, prio)
        sla = _sla(cal, prio, events)
        if rng.random() < 0.03:  # the tool gets it wrong sometimes
            flag = rng.choice(("response_met", "resolution_met"))
            if sla[flag] is not None:
                sla[flag] = not sla[flag]
        person, engineer = rng.choice(people[c]), rng.choice(engineers)
        drafts.append(
            (created, prio, c, s, events, sla, person, engineer, rng.choice(SUMMARIES[s]))
        )
    drafts.sort(key=lambda d: d[0])
    for n, (_, prio, c, s, events, sla, person, engineer, summary) in enumerate(drafts):
        changelog = [{"at": stamp(t), "status": status} for t, status in events]
        record = _record(n, prio, c, s, changelog, sla, person, engineer, summary)
        if unit(seed, month, count, "complaint", n) < COMPLAINT_RATE:
            record["fields"]["labels"] = ["complaint"]  # drawn apart: the other picks stay put
        yield record


def _record(
    n: int,
    prio: str,
    c: int,
    s: int,
    changelog: list[dict[str, str]],
    sla: dict[str, Any],
    person: dict[str, Any],
    engineer: str,
    summary: str,
) -> dict[str, Any]:
    customer, service = CUSTOMERS[c][0], SERVICES[s][0]
    resolved = [e["at"] for e in changelog if e["status"] == "Resolved"]
    return {
        "id": str(10000 + n),
        "key": f"SBX-{n + 1}",
        "fields": {
            "summary": summary,
            "description": f"{person['displayName']} ({customer}) reports: {summary}",
            "status": {"name": changelog[-1]["status"]},
            "priority": {"name": PRIORITY_NAMES[prio]},
            "service": {"id": f"svc-{s + 1}", "name": service},
            "organization": {"id": f"org-{c + 1}", "name": customer},
            "reporter": dict(person),
            "assignee": {"displayName": engineer},
            "created": changelog[0]["at"],
            "updated": changelog[-1]["at"],
            "resolutiondate": resolved[-1] if resolved else None,
            "sla": sla,
        },
        "changelog": changelog,
    }


def view_as_of(raw: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """The record as the ITSM shows it at ``now`` (aware), or None before its creation.

    Only changelog entries at or before ``now`` are visible; status, updated,
    resolution date and the SLA flags follow the visible history (a flag is
    null until the event it judges is visible).
    """
    log = raw["changelog"]
    visible = [e for e in log if datetime.fromisoformat(e["at"]) <= now]
    if not visible:
        return None
    if len(visible) == len(log):
        return raw
    fields = dict(raw["fields"])
    last = visible[-1]
    statuses = [e["status"] for e in visible]
    final_resolved = sum(1 for e in log if e["status"] == "Resolved")
    seen_resolved = statuses.count("Resolved")
    fields["status"] = {"name": last["status"]}
    fields["updated"] = last["at"]
    reopened = last["status"] not in ("Resolved", "Closed")
    fields["resolutiondate"] = (
        None
        if reopened or not seen_resolved
        else [e["at"] for e in visible if e["status"] == "Resolved"][-1]
    )
    sla = dict(fields["sla"])
    if len(visible) < 2:
        sla["response_met"] = None
    if seen_resolved < final_resolved or not final_resolved:
        sla["resolution_met"] = None
    fields["sla"] = sla
    return {**raw, "fields": fields, "changelog": visible}
