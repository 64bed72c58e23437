"""The box the demo prints once everything runs: where to look, who to log in as, what to expect."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

from demo.fleet import Fleet
from demo.seed import Seeded

LONG_SHIFT_LEFT_S = 20 * 60  # the long-shift scenario opens its shift 23 h 40 min before the start
DAY_S = 86400
WIDTH = 96  # wrap long lists so the box fits a normal terminal
CREDENTIALS_NOTE = "All of this is also in {path}"


def _box(lines: list[str]) -> str:
    width = max(len(line) for line in lines)
    top, bottom = "┌" + "─" * (width + 2) + "┐", "└" + "─" * (width + 2) + "┘"
    return "\n".join([top, *(f"│ {line.ljust(width)} │" for line in lines), bottom])


def _problems(fleet: Fleet) -> str:
    counts = Counter(r.profile.name for r in fleet.registers if r.profile.expect)
    return ", ".join(f"{name}×{n}" if n > 1 else name for name, n in sorted(counts.items()))


def _wrapped(text: str, width: int, indent: str) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)


def banner(
    *,
    url: str,
    speed: float,
    credentials: Path,
    mail_log: Path,
    mailbox_url: str,
    broker_url: str,
    embedded: bool,
    seeded: Seeded,
    fleet: Fleet,
) -> str:
    lines = [
        "kassa-monitor demo is running",
        "",
        f"Web:  {url}",
        f"API:  {url}api/v1/registers   (OpenAPI: {url}api/v1/openapi.json)",
        f"MQTT: {broker_url}{' (embedded amqtt)' if embedded else ''}",
        f"Mail: nothing is sent — invitations, password resets and sign-up links are at {mailbox_url}",
        f"      and in {mail_log}",
        "",
        "Logins (password, then the API token for Authorization: Bearer …):",
    ]
    for s in seeded.users:
        lines += [f"  {s.user.email}  /  {s.user.password}   — {s.user.description}", f"    token {s.token}"]
    lines += [
        "",
        f"Try:  curl -H 'Authorization: Bearer <owner's token>' {url}api/v1/registers",
        "",
        f"{len(fleet.registers)} simulated registers, one agent each. Problems on purpose:",
        *_wrapped(_problems(fleet) + ".", WIDTH, indent="  "),
        f"Register clocks run {speed:g}× real time (1 real minute = {speed:g} register minutes): the long",
        f"shift (23 h 40 min at start) passes 24 h after {LONG_SHIFT_LEFT_S / speed:.0f} s, OFD backlogs age by a day "
        f"every {DAY_S / speed / 60:.0f} real minutes.",
        "The offline agent was killed: it shows as agent_offline after 30 s of silence (demo threshold).",
        CREDENTIALS_NOTE.format(path=credentials),
        "",
        "Press Ctrl-C to stop.",
    ]
    return _box(lines)
