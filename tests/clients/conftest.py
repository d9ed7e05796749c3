"""The official Flagsmith clients from npm (pinned in package.json and package-lock.json),
installed by the test run when missing, and a second origin for the browser SDK's page."""

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.npm import npm_ci

CLIENTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def node_clients():
    """tests/clients with its node_modules (`npm ci` from the lock file when absent)."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.fail("node and npm are needed for the client tests (Node 20+; Debian: "
                    "apt-get install -y nodejs npm).")
    npm_ci(CLIENTS, CLIENTS / "node_modules" / ".package-lock.json")
    return CLIENTS


@pytest.fixture
def second_origin(node_clients):
    """tests/clients served on another loopback port than the app: the shop's origin."""
    handler = functools.partial(_QuietHandler, directory=str(node_clients))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output to the failures
        pass
