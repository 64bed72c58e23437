"""Take the README's screenshots from a running demo (`make demo`) with Debian's Chromium.

    python scripts/demo_screenshots.py --url http://127.0.0.1:8080 --out docs/screenshots

Logs in through the demo's login page as the owner (credentials from demo-data/credentials.json
or --email/--password), then captures the dashboard, tree, registers list, one register and
the alerts page, the КЭП page and the company settings at desktop width, and the dashboard at
phone width.
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
        shots = {"dashboard": "/", "tree": "/tree", "registers": "/registers", "alerts": "/alerts",
                 "kep": "/admin/kep", "company": "/admin/company"}
        for name, path in shots.items():
            page.goto(args.url + path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(args.out / f"{name}.png"), full_page=False)
        page.goto(args.url + "/registers?rule=ofd_backlog")
        page.click("table tbody tr a")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(args.out / "register.png"), full_page=False)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, locale="ru-RU")
        phone.context.add_cookies(page.context.cookies())
        phone.goto(args.url + "/")
        phone.wait_for_load_state("networkidle")
        phone.screenshot(path=str(args.out / "dashboard-phone.png"), full_page=False)
        browser.close()
    print(f"screenshots written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
