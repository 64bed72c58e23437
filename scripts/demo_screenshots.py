"""Take the README's screenshots from a running demo (`make demo`) with Debian's Chromium.

    python scripts/demo_screenshots.py --url http://127.0.0.1:8080 --out docs/screenshots

Logs in through the demo's login page as the owner (credentials from demo-data/credentials.json
or --email/--password), then captures the dashboard (tall enough to show the counters and the first
rows of «Ближайшие блокировки»), tree, registers list, one register and the alerts page, the КЭП
page and the company settings at desktop width, and at phone width the top of the dashboard and its
ranking as cards. Take them a minute after the demo starts, when the planted problems show.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}
# The counters take the first 800 px at 1360 px: this height adds the first rows of the ranking.
DASHBOARD = {"width": 1360, "height": 1500}


def owner_credentials(data_dir: Path) -> tuple[str, str]:
    users = json.loads((data_dir / "credentials.json").read_text())["users"]
    owner = next(u for u in users if u["email"].startswith("owner"))
    return owner["email"], owner["password"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--data-dir", type=Path, default=Path("demo-data"))
    parser.add_argument("--email")
    parser.add_argument("--password")
    args = parser.parse_args()
    email, password = (args.email, args.password) if args.email else owner_credentials(args.data_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900}, locale="ru-RU")
        page.goto(f"{args.url}/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        shots = {"tree": "/tree", "registers": "/registers", "alerts": "/alerts",
                 "kep": "/admin/kep", "company": "/admin/company"}
        for name, path in shots.items():
            page.goto(args.url + path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(args.out / f"{name}.png"), full_page=False)
        page.goto(args.url + "/")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(args.out / "dashboard.png"), clip={"x": 0, "y": 0, **DASHBOARD}, full_page=True)
        page.goto(args.url + "/registers?rule=ofd_backlog")
        page.click("table tbody tr a")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(args.out / "register.png"), full_page=False)
        phone = browser.new_page(viewport=PHONE, locale="ru-RU")
        phone.context.add_cookies(page.context.cookies())
        phone.goto(args.url + "/")
        phone.wait_for_load_state("networkidle")
        phone.screenshot(path=str(args.out / "dashboard-phone.png"), full_page=False)
        top = phone.locator("#ranking-title").bounding_box()
        if top is None:
            raise SystemExit("the dashboard has no «Ближайшие блокировки» section: is the demo's fleet up?")
        phone.screenshot(path=str(args.out / "dashboard-phone-cards.png"), full_page=True,
                         clip={"x": 0, "y": top["y"] - 8, **PHONE})
        browser.close()
    print(f"screenshots written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
