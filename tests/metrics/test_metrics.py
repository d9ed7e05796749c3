"""/metrics: Prometheus' text format, who may read it, and correct sums across gunicorn workers."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from webapp import create_app
from webapp.extensions import db
from webapp.models import PipelineRun
from webapp.services.runs import controls, sweep


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(text: str, name: str, **labels) -> float:
    return _samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_in_prometheus_format_from_loopback(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    text = response.get_data(as_text=True)
    assert "# TYPE railyard_transition_lag_seconds histogram" in text
    assert _value(text, "railyard_runs", status="waiting") == 0
    assert _value(text, "railyard_queue_depth", registry="queued") == 0


def test_metrics_refused_to_other_hosts_without_a_token(client):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 403


@pytest.mark.parametrize("header, status", [
    (None, 403), ("Bearer wrong", 403), ("Bearer s3cret-metrics", 200), ("s3cret-metrics", 403)])
def test_metrics_token_when_configured(app_config, header, status):
    app = create_app({**app_config, "METRICS_TOKEN": "s3cret-metrics"})
    headers = {"Authorization": header} if header else {}
    response = app.test_client().get("/metrics", headers=headers,
                                     environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == status


def test_transitions_runs_by_status_and_lag(client, clock, make, project, editor, two_stage):
    before = client.get("/metrics").get_data(as_text=True)
    feature = make.feature(project)
    from webapp.services.actors import Actor

    controls.add_flag(project, two_stage.id, feature.id, Actor.for_user(editor))
    clock.shift(5)
    sweep.drain()
    after = client.get("/metrics").get_data(as_text=True)
    assert (_value(after, "railyard_transitions_applied_total")
            - _value(before, "railyard_transitions_applied_total")) == 1
    # Due at START, applied 5 s later by the frozen clock: one observation in the 5 s bucket.
    lag_5 = (_value(after, "railyard_transition_lag_seconds_bucket", le="5.0")
             - _value(before, "railyard_transition_lag_seconds_bucket", le="5.0"))
    lag_3 = (_value(after, "railyard_transition_lag_seconds_bucket", le="3.0")
             - _value(before, "railyard_transition_lag_seconds_bucket", le="3.0"))
    assert (lag_5, lag_3) == (1, 0)
    assert _value(after, "railyard_runs", status="waiting") == 1
    db.session.execute(db.update(PipelineRun).values(status="halted"))
    db.session.commit()
    halted = client.get("/metrics").get_data(as_text=True)
    assert _value(halted, "railyard_runs_halted") == 1
    assert _value(halted, "railyard_runs", status="waiting") == 0


def test_sdk_requests_counted_by_endpoint_and_status(client, make, project):
    env = make.environments(project)[0]
    before = client.get("/metrics").get_data(as_text=True)
    for _ in range(3):
        assert client.get("/api/v1/flags/", headers={"X-Environment-Key": env.client_key}
                          ).status_code == 200
    assert client.get("/api/v1/flags/", headers={"X-Environment-Key": "nope"}).status_code == 401
    after = client.get("/metrics").get_data(as_text=True)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("railyard_sdk_requests_total", endpoint="flags", status="200") == 3
    assert delta("railyard_sdk_requests_total", endpoint="flags", status="401") == 1
    assert delta("railyard_sdk_request_duration_seconds_count", endpoint="flags") == 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_counts_summed_across_gunicorn_workers(app, make, project, database_url, redis_url,
                                              tmp_path):
    env = make.environments(project)[0]
    db.session.commit()
    port = _free_port()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    child_env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                 "SECRET_KEY": "x", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "3", "--graceful-timeout", "3",
         "--bind", f"127.0.0.1:{port}",
         "--config", "python:webapp.gunicorn_conf", "wsgi:app"],
        env=child_env, cwd=os.getcwd(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        for _ in range(30):
            request = urllib.request.Request(f"{base}/api/v1/flags/",
                                             headers={"X-Environment-Key": env.client_key})
            assert urllib.request.urlopen(request, timeout=5).status == 200
        # Several scrapes, answered by whichever worker: each sees every worker's counts.
        for _ in range(5):
            text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
            assert _value(text, "railyard_sdk_requests_total", endpoint="flags",
                          status="200") == 30
        assert len(list(multiproc.glob("*.db"))) >= 1
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:  # a worker stuck in shutdown: do not leave it behind
            server.kill()
            server.wait()
