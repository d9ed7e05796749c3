"""Project settings → Integrations: Prometheus URL and header, the alert receiver (admins only,
audited, the header never shown back nor audited in clear)."""

import pytest
from sqlalchemy import select

from tests.platform.conftest import fresh
from webapp.extensions import db
from webapp.models import AuditEntry
from webapp.models.health import ProjectIntegration

PATH = "/projects/{}/settings/integrations"


def _row(project):
    fresh()
    return db.session.get(ProjectIntegration, project.id)


@pytest.mark.parametrize("who", ["editor", "viewer"])
def test_only_admins_change_integrations(client, login, request, project, who):
    login(client, request.getfixturevalue(who))
    response = client.post(PATH.format(project.id), data={"prometheus_url": "http://p:9090"})
    assert response.status_code == 403
    assert _row(project) is None


def test_admin_sets_prometheus_and_the_receiver(hx, client, login, admin, project):
    login(hx, admin)
    response = hx.post(PATH.format(project.id), data={
        "prometheus_url": "http://prometheus:9090/", "prometheus_auth_header": "Bearer sekrit",
        "alert_receiver": "enable"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<html" not in html and 'id="integration_settings"' in html
    row = _row(project)
    assert (row.prometheus_url, row.prometheus_auth_header) == ("http://prometheus:9090",
                                                                "Bearer sekrit")
    assert row.alert_secret and f"/hooks/alerts/{row.alert_secret}" in html
    assert "sekrit" not in html
    entry = db.session.scalar(select(AuditEntry).where(
        AuditEntry.event_type == "PROJECT_INTEGRATIONS_UPDATED"))
    assert "sekrit" not in repr((entry.message, entry.before, entry.after))
    assert entry.after["prometheus_auth_header_set"] is True
    # A blank header keeps the stored one; rotating makes a new receiver secret.
    old_secret = row.alert_secret
    hx.post(PATH.format(project.id), data={"prometheus_url": "http://prometheus:9090",
                                          "alert_receiver": "rotate"})
    row = _row(project)
    assert row.prometheus_auth_header == "Bearer sekrit" and row.alert_secret != old_secret
    hx.post(PATH.format(project.id), data={"prometheus_url": "", "clear_auth_header": "1",
                                          "alert_receiver": "disable"})
    row = _row(project)
    assert (row.prometheus_url, row.prometheus_auth_header, row.alert_secret) == ("", "", None)


@pytest.mark.parametrize("data, field", [
    ({"prometheus_url": "ftp://x"}, "prometheus_url"),
    ({"prometheus_url": "http://p", "prometheus_auth_header": "a\nb"}, "prometheus_auth_header"),
    ({"prometheus_url": "http://p", "alert_receiver": "explode"}, "alert_receiver"),
])
def test_bad_input_is_422_and_saves_nothing(hx, login, admin, project, data, field):
    login(hx, admin)
    response = hx.post(PATH.format(project.id), data=data)
    assert response.status_code == 422
    assert _row(project) is None
    if field != "alert_receiver":
        assert 'aria-invalid="true"' in response.get_data(as_text=True)


def test_without_csrf_is_400(client, login, admin, project):
    login(client, admin)
    response = client.post(PATH.format(project.id), data={"prometheus_url": "http://p"},
                           csrf=False)
    assert response.status_code == 400 and _row(project) is None
