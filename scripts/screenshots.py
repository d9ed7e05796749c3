"""Screenshots of every dashboard page at 1366 and 390 px wide, in an empty, a typical and a
large (30 stages, 10,000 flags) state, to look at before calling a layout done.

    .venv/bin/python scripts/screenshots.py                 # everything into screenshots/
    .venv/bin/python scripts/screenshots.py --only board    # pages whose name contains "board"
    .venv/bin/python scripts/screenshots.py --flags 200     # a smaller "large" project

It builds its own world (tests/support/tour.py) in a temporary SQLite database with a private
Redis, serves it on a free loopback port, and drives Debian's Chromium (`CHROMIUM_PATH`,
default /usr/bin/chromium-headless-shell, as the tests) through Playwright (installed by
`make test`). Files are named `<width>/<page>.png`. It prints each page whose content is
wider than the window (a phone user would have to scroll sideways) and each console error, and
exits 1 when there is one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from tests.support import tour, tour_walk  # noqa: E402
from tests.support.browser import CHROMIUM  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.extensions import db  # noqa: E402

WIDTHS = (1366, 390)
# Chromium cannot paint one image taller than 16,384 px; the 10,000-flag table is far taller.
MAX_HEIGHT = 12_000

def serve(app):
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line a request is noise here
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def shoot(page: Page, path: Path) -> None:
    height = page.evaluate("document.documentElement.scrollHeight")
    if height <= MAX_HEIGHT:
        page.screenshot(path=str(path), full_page=True)
    else:
        width = page.viewport_size["width"] if page.viewport_size else 1366
        page.screenshot(path=str(path), full_page=True,
                        clip={"x": 0, "y": 0, "width": width, "height": MAX_HEIGHT})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "screenshots"), help="folder (screenshots/)")
    parser.add_argument("--only", default="", help="only pages whose name contains this")
    parser.add_argument("--flags", type=int, default=10_000, help="flags in the large project")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install -y chromium-headless-shell "
              "(or set CHROMIUM_PATH)")
        return 1
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="railyard-shots-") as instance:
        app = create_app({"SECRET_KEY": "screenshots", "INSTANCE_PATH": instance,
                          "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance}/shots.db",
                          "REDIS_URL": ""})
        with app.app_context():
            db.create_all()
            started = time.monotonic()
            pages = [p for p in tour.build(large_flags=args.flags).pages if args.only in p.name]
            print(f"world built in {time.monotonic() - started:.0f} s; {len(pages)} pages")
        server, base = serve(app)
        problems: list[str] = []
        try:
            problems = _walk(base, pages, out)
        finally:
            server.shutdown()
            embedded = app.extensions.get("railyard.embedded_redis")
            if embedded is not None:
                embedded.shutdown()
    print(f"{len(pages) * len(WIDTHS)} screenshots in {out}")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def _walk(base: str, pages: list[tour.Page], out: Path) -> list[str]:
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        for width in WIDTHS:
            folder = out / str(width)
            folder.mkdir(parents=True, exist_ok=True)

            def visit(page: Page, item: tour.Page, folder: Path = folder) -> list[str]:
                page.wait_for_load_state("networkidle")
                shoot(page, folder / f"{item.name}.png")
                return tour_walk.too_wide(page)

            context = browser.new_context(viewport={"width": width, "height": 900})
            try:
                problems += tour_walk.walk(context, base, pages, visit)
            finally:
                context.close()
        browser.close()
    return problems


if __name__ == "__main__":
    sys.exit(main())
