"""A real Prometheus and a real Alertmanager (Debian's packages), started per test on free ports
with their own configuration in tmp dirs; Prometheus scrapes a small exporter the test controls.
"""

import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from webapp.extensions import db
from webapp.models import StageHealthCheck
from webapp.models.health import ProjectIntegration

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Exporter:
    """Serves `checkout_error_ratio{flag=…} <value>` on /metrics; the test flips `value`."""

    def __init__(self):
        self.value = 0.01
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 — http.server's name
                body = ("# TYPE checkout_error_ratio gauge\n"
                        f'checkout_error_ratio{{flag="guarded_flag"}} {exporter.value}\n').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporter():
    exporter = Exporter()
    yield exporter
    exporter.close()


class Prometheus:
    def __init__(self, folder: Path, exporter_port: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: exporter\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{exporter_port}']\n")
        self.command = [PROMETHEUS, f"--config.file={config}",
                        f"--storage.tsdb.path={folder / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}"]
        self.log = open(folder / "prometheus.log", "wb")  # noqa: SIM115
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=self.log)
        wait_until(lambda: urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200,
                   what="Prometheus ready")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def value(self, query: str):
        with urllib.request.urlopen(f"{self.url}/api/v1/query?"
                                    + urllib.parse.urlencode({"query": query}), timeout=2) as r:
            result = json.loads(r.read())["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for_value(self, query: str, wanted: float, timeout: float = 20.0):
        wait_until(lambda: self.value(query) == wanted, timeout,
                   what=f"Prometheus to see {query} == {wanted}")


@pytest.fixture
def prometheus(tmp_path, exporter):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    server = Prometheus(folder, exporter.port)
    server.wait_for_value("checkout_error_ratio", exporter.value)
    yield server
    server.stop()
    server.log.close()


class Alertmanager:
    def __init__(self, folder: Path, webhook_url: str):
        self.port = free_port()
        cluster = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: railyard\n  group_by: ['alertname', 'railyard_flag']\n"
            "  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n"
            "receivers:\n  - name: railyard\n    webhook_configs:\n"
            f"      - url: '{webhook_url}'\n        send_resolved: true\n")
        self.log = open(folder / "alertmanager.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={config}", f"--storage.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             f"--cluster.listen-address=127.0.0.1:{cluster}"],
            stdout=self.log, stderr=self.log)
        wait_until(lambda: urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200,
                   what="Alertmanager ready")

    def post_alerts(self, alerts: list[dict]):
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts", data=json.dumps(alerts).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.log.close()


@pytest.fixture
def alertmanager_for(tmp_path):
    started = []

    def _start(webhook_url: str) -> Alertmanager:
        folder = tmp_path / "alertmanager"
        folder.mkdir()
        server = Alertmanager(folder, webhook_url)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


@pytest.fixture
def integrate(project):
    """integrate(prometheus_url=…, alert_secret=…): the project's integration settings."""

    def _integrate(prometheus_url: str = "", alert_secret: str | None = None):
        db.session.merge(ProjectIntegration(project_id=project.id, prometheus_url=prometheus_url,
                                            prometheus_auth_header="",
                                            alert_secret=alert_secret))
        db.session.commit()

    return _integrate


@pytest.fixture
def guard(make_pipeline):
    """guard(stages, checks={position: [check dicts]}, on_unhealthy={position: "ROLL_BACK"})."""

    def _guard(stages, *, checks, on_unhealthy=None, name="Guarded"):
        pipeline = make_pipeline(stages, name=name)
        for position, specs in checks.items():
            stage = pipeline.stages[position]
            stage.on_unhealthy = (on_unhealthy or {}).get(position, "HOLD")
            for index, spec in enumerate(specs):
                stage.checks.append(StageHealthCheck(position=index, **{
                    "interval_seconds": 1, "failures_to_trip": 1, **spec}))
        db.session.commit()
        return pipeline

    return _guard
