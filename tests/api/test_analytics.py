"""Flag analytics: SDK posts counted per flag, environment and day, shown on the flag page."""

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from jobs import schedule
from webapp import redis_conn
from webapp.extensions import db
from webapp.models import FlagEvaluationCount
from webapp.services.platform import analytics

DAY = datetime(2030, 3, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(DAY, tick=False)
    return time_machine


def _post(client, key, payload):
    return client.post("/api/v1/analytics/flags/", json=payload,
                       headers={"X-Environment-Key": key})


def _counts():
    db.session.rollback()
    return {(row.feature_id, row.environment_id, row.day): row.count
            for row in db.session.scalars(select(FlagEvaluationCount))}


def test_posts_are_buffered_then_counted_per_flag_environment_and_day(client, platform, clock):
    dev, prod = platform.development, platform.production
    assert _post(client, dev.client_key, {"new_checkout": 3, "banner_text": 1}).status_code == 200
    assert _post(client, dev.server_key, {"new_checkout": 2, "no_such_flag": 9}).status_code == 200
    assert _post(client, prod.client_key, {"new_checkout": 5}).status_code == 200
    assert _counts() == {}  # an SDK post writes nothing to the database
    assert schedule.sweep_once()["counted"] == 3  # rows written
    today = DAY.date()
    assert _counts() == {
        (platform.checkout.id, dev.id, today): 5, (platform.banner.id, dev.id, today): 1,
        (platform.checkout.id, prod.id, today): 5}
    # The next day's counts are rows of their own; a second flush adds to existing rows.
    _post(client, dev.client_key, {"new_checkout": 1})
    clock.shift(86400)
    _post(client, dev.client_key, {"new_checkout": 7})
    analytics.flush()
    counts = _counts()
    assert counts[(platform.checkout.id, dev.id, today)] == 6
    assert counts[(platform.checkout.id, dev.id, date(2030, 3, 5))] == 7
    assert analytics.flush() == 0  # nothing left buffered


def test_counts_survive_a_failed_flush(client, platform, clock, app):
    _post(client, platform.development.client_key, {"new_checkout": 4})
    connection = redis_conn.connection()
    (key,) = connection.smembers(analytics.PENDING)
    db.session.execute(db.text("DROP TABLE flag_evaluation_count"))
    with pytest.raises(Exception):  # noqa: B017 — whatever the driver raises for a missing table
        analytics.flush()
    assert connection.hgetall(key) == {b"new_checkout": b"4"}
    assert connection.sismember(analytics.PENDING, key)


@pytest.mark.parametrize("payload", [
    None, [], "x", {"new_checkout": -1}, {"new_checkout": "3"}, {"new_checkout": 1.5},
    {"new_checkout": True}, {"": 1}, {"x" * 256: 1}, {f"f{n}": 1 for n in range(1001)},
])
def test_bad_posts_are_4xx_and_count_nothing(client, platform, payload):
    response = _post(client, platform.development.client_key, payload)
    assert 400 <= response.status_code < 500 and response.get_json()["detail"]
    assert redis_conn.connection().smembers(analytics.PENDING) == set()


def test_a_post_needs_an_environment_key(client, platform):
    response = client.post("/api/v1/analytics/flags/", json={"new_checkout": 1})
    assert response.status_code == 401
    assert _post(client, "nope", {"new_checkout": 1}).status_code == 401


def test_the_flag_page_shows_evaluations_per_day_and_environment(client, login, make, project,
                                                                   platform, clock):
    viewer = make.user(project=project, role="viewer")
    login(client, viewer)
    page = client.get(f"/projects/{project.id}/flags/{platform.checkout.id}")
    assert "No evaluations reported" in page.get_data(as_text=True)
    _post(client, platform.production.client_key, {"new_checkout": 1234})
    analytics.flush()
    html = client.get(f"/projects/{project.id}/flags/{platform.checkout.id}") \
        .get_data(as_text=True)
    assert 'id="flag_evaluations"' in html and "1,234" in html
    section = html[html.index('id="flag_evaluations"'):html.index('id="flag_history"')]
    assert section.index("Production") < section.index("1,234")
    assert '<time datetime="2030-03-04">Today</time>' in section
