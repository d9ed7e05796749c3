"""A project's integrations in the admin API: admins only, the header never answered, audited."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry
from webapp.models.health import ProjectIntegration

from .conftest import api, token_for


def path(project):
    return f"projects/{project.id}/integrations/"


def test_admin_reads_and_sets_integrations(client, project, org_key):
    assert api(client, "GET", path(project), key=org_key).get_json() == {
        "prometheus_url": "", "prometheus_auth_header_set": False, "alert_receiver_url": None}
    answer = api(client, "PUT", path(project), key=org_key, json={
        "prometheus_url": "http://prom:9090", "prometheus_auth_header": "Bearer sekrit",
        "alert_receiver": "enable"})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    row = db.session.get(ProjectIntegration, project.id)
    assert body == {"prometheus_url": "http://prom:9090", "prometheus_auth_header_set": True,
                    "alert_receiver_url": f"http://localhost/hooks/alerts/{row.alert_secret}"}
    assert "sekrit" not in answer.get_data(as_text=True)
    assert db.session.scalar(select(AuditEntry.event_type).where(
        AuditEntry.event_type == "PROJECT_INTEGRATIONS_UPDATED")) is not None


@pytest.mark.parametrize("payload, field", [
    ({"prometheus_url": "gopher://x"}, "prometheus_url"),
    ({"alert_receiver": "explode"}, "alert_receiver"),
])
def test_bad_input_is_422_and_saves_nothing(client, project, org_key, payload, field):
    response = api(client, "PUT", path(project), key=org_key, json=payload)
    assert response.status_code == 422 and field in str(response.get_json())
    assert db.session.get(ProjectIntegration, project.id) is None


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_only_admins(client, make, project, role):
    user = make.user(project=project, role=role)
    token = token_for(user)
    assert api(client, "GET", path(project), token=token).status_code == 403
    assert api(client, "PUT", path(project), token=token,
               json={"prometheus_url": "http://p"}).status_code == 403
    assert db.session.get(ProjectIntegration, project.id) is None
