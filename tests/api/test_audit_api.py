"""`GET /api/v1/audit/?project=<id>`: the audit page's filters, keyset pages, masking by role,
422 per field for bad filters, 404 out of reach."""

from datetime import UTC, datetime, timedelta

import pytest

from webapp.extensions import db
from webapp.models import ReleasePipeline
from webapp.services.actors import Actor
from webapp.services.governance import audit

from .conftest import api, token_for

T0 = datetime(2020, 3, 1, 12, 0, tzinfo=UTC)
# The platform fixture's own entries are written now; these cases look at 2020 only.
IN_2020 = "&until=2020-12-31"


def record(project, event_type, *, actor="alice@example.com", at=T0, **fields):
    entry = audit.record(Actor("user", actor), event_type, f"{event_type} by {actor}",
                         project_id=project.id, object_type="feature_state", **fields)
    entry.created_at = at
    db.session.commit()
    return entry.id


def listed(client, query, **credentials):
    answer = api(client, "GET", f"audit/?{query}", **credentials)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


@pytest.fixture
def log(project, platform):
    """Three entries in 2020 across flags, environments, actors and a pipeline."""
    pipeline = ReleasePipeline(project_id=project.id, name="Rollout")
    db.session.add(pipeline)
    db.session.commit()
    dev, prod = platform.development.id, platform.production.id
    ids = {
        "first": record(project, "TEST_TOGGLED", feature_id=platform.checkout.id,
                        environment_id=dev),
        "second": record(project, "TEST_MOVED", actor="bob@example.com", at=T0 + timedelta(hours=1),
                         feature_id=platform.banner.id, environment_id=prod,
                         pipeline_id=pipeline.id),
        "third": record(project, "TEST_TOGGLED", actor="bob@example.com",
                        at=T0 + timedelta(days=1), feature_id=platform.checkout.id,
                        environment_id=prod),
    }
    return ids, pipeline


def test_entries_come_newest_first_with_what_happened(client, project, platform, log, org_key):
    ids, pipeline = log
    page = listed(client, f"project={project.id}{IN_2020}", key=org_key)

    assert page["count"] == 3 and page["next"] is None and page["previous"] is None
    assert [e["id"] for e in page["results"]] == [ids["third"], ids["second"], ids["first"]]
    assert page["results"][1] == {
        "id": ids["second"], "created_at": "2020-03-01T13:00:00+00:00",
        "event_type": "TEST_MOVED", "actor": "bob@example.com", "actor_type": "user",
        "message": "TEST_MOVED by bob@example.com", "environment": platform.production.id,
        "feature": platform.banner.id, "pipeline": pipeline.id, "change_request": None,
        "object_type": "feature_state", "object_id": None, "object_label": "",
        "before": None, "after": None}


def test_an_api_change_shows_up_with_its_key(client, project, platform, org_key):
    state = api(client, "GET", f"environments/{platform.development.client_key}/featurestates/"
                f"?feature={platform.checkout.id}", key=org_key).get_json()["results"][0]
    api(client, "PATCH", f"environments/{platform.development.client_key}/featurestates/"
        f"{state['id']}/", key=org_key, json={"enabled": True})

    newest = listed(client, f"project={project.id}&event_type=FEATURE_STATE_UPDATED",
                    key=org_key)["results"][0]

    assert (newest["actor"], newest["actor_type"]) == ("API key CI", "api_key")
    assert newest["feature"] == platform.checkout.id
    assert newest["environment"] == platform.development.id
    assert newest["before"]["enabled"] is False and newest["after"]["enabled"] is True


@pytest.mark.parametrize("query, expected", [
    ("event_type=TEST_TOGGLED", ["third", "first"]),
    ("actor=bob@example.com", ["third", "second"]),
    ("feature={checkout}", ["third", "first"]),
    ("pipeline={pipeline}", ["second"]),
    ("environment={production}", ["third", "second"]),
    ("event_type=TEST_TOGGLED&environment={production}", ["third"]),
    ("since=2020-03-01T12:30", ["third", "second"]),
    ("since=2020-03-01T14:00%2B02:00", ["third", "second", "first"]),  # 12:00 UTC
    ("until=2020-03-01", ["second", "first"]),  # a day: all of it
    ("until=2020-03-01T12:00", ["first"]),  # a minute: all of it
    ("since=2020-03-02&until=2020-03-02", ["third"]),
    ("since=2020-03-01T12:00:00Z&until=2020-03-01T12:59:59", ["first"]),
    ("event_type=&actor=&since=", ["third", "second", "first"]),  # empty: any
    ("event_type=NOTHING_LIKE_IT", []),
])
def test_filters_as_on_the_audit_page(query, expected, client, project, platform, log, org_key):
    ids, pipeline = log
    query = query.format(checkout=platform.checkout.id, pipeline=pipeline.id,
                         production=platform.production.id)
    if "until=" not in query:
        query += IN_2020

    page = listed(client, f"project={project.id}&{query}", key=org_key)

    assert [e["id"] for e in page["results"]] == [ids[name] for name in expected]
    assert page["count"] == len(expected)


def test_pages_by_keyset_links(client, project, platform, org_key):
    ids = [record(project, "BULK", at=T0 + timedelta(minutes=n)) for n in range(5)]
    newest_first = ids[::-1]

    first = listed(client, f"project={project.id}&event_type=BULK&page_size=2", key=org_key)
    assert [e["id"] for e in first["results"]] == newest_first[:2]
    assert first["count"] == 5 and first["previous"] is None
    second = listed(client, first["next"].split("/api/v1/audit/?", 1)[1], key=org_key)
    assert [e["id"] for e in second["results"]] == newest_first[2:4]
    assert "event_type=BULK" in second["next"] and "page_size=2" in second["next"]
    last = listed(client, second["next"].split("/api/v1/audit/?", 1)[1], key=org_key)
    assert [e["id"] for e in last["results"]] == newest_first[4:] and last["next"] is None
    back = listed(client, last["previous"].split("/api/v1/audit/?", 1)[1], key=org_key)
    assert [e["id"] for e in back["results"]] == newest_first[2:4]
    assert back["count"] == 5


SECRETS = {"before": {"api_key": "ser.abc", "name": "CI"},
           "after": {"nested": {"token": "t0k"}, "items": [{"password": "pw"}], "name": "CI"}}
MASKED = {"before": {"api_key": "••••••", "name": "CI"},
          "after": {"nested": {"token": "••••••"}, "items": [{"password": "••••••"}],
                    "name": "CI"}}


@pytest.mark.parametrize("who, shown", [
    ("viewer", MASKED), ("editor", MASKED), ("admin", SECRETS), ("org_key", SECRETS)])
def test_secrets_are_masked_as_on_the_page(who, shown, client, project, viewer, editor, admin,
                                           org_key):
    record(project, "KEY_ROTATED", **SECRETS)
    users = {"viewer": viewer, "editor": editor, "admin": admin}
    credentials = {"key": org_key} if who == "org_key" else {"token": token_for(users[who])}

    [entry] = listed(client, f"project={project.id}&event_type=KEY_ROTATED",
                     **credentials)["results"]

    assert {"before": entry["before"], "after": entry["after"]} == shown


def other_projects_objects(make):
    other = make.project("Other")
    pipeline = ReleasePipeline(project_id=other.id, name="Theirs")
    db.session.add(pipeline)
    db.session.commit()
    return {"feature": make.feature(other, "theirs").id, "pipeline": pipeline.id,
            "environment": make.environments(other)[0].id}


@pytest.mark.parametrize("query, field, says", [
    ("", "project", "Missing data for required field."),
    ("project=abc", "project", "Not a valid integer."),
    ("project=0", "project", "greater than or equal to 1"),
    ("project={project}&event_type=not%20a%20type!", "event_type", "Not an event type."),
    ("project={project}&actor=" + "x" * 321, "actor", "between 1 and 320"),
    ("project={project}&feature={feature}", "feature", "Pick a feature of this project."),
    ("project={project}&feature=x", "feature", "Not a valid integer."),
    ("project={project}&pipeline={pipeline}", "pipeline",
     "Pick a release pipeline of this project."),
    ("project={project}&environment={environment}", "environment",
     "Pick an environment of this project."),
    ("project={project}&environment=2147483647", "environment",
     "Pick an environment of this project."),
    ("project={project}&environment=99999999999", "environment", "less than or equal to"),
    ("project={project}&since=yesterday", "since", "Not a date or time"),
    ("project={project}&until=2020-13-01", "until", "Not a date or time"),
    ("project={project}&until=9999-12-31", "until", "Not a date or time"),
    ("project={project}&since=2020-03-02&until=2020-03-01", "until",
     "Must not be before since."),
    ("project={project}&before=5&after=2", "after", "Use before or after, not both."),
    ("project={project}&before=-1", "before", "greater than or equal to 1"),
    ("project={project}&page_size=0", "page_size", "greater than or equal to 1"),
    ("project={project}&page_size=501", "page_size", "less than or equal to 500"),
])
def test_bad_filters_answer_422_per_field(query, field, says, client, make, project, org_key):
    query = query.format(project=project.id, **other_projects_objects(make))

    answer = api(client, "GET", f"audit/?{query}", key=org_key)

    assert answer.status_code == 422
    body = answer.get_json()
    assert body["detail"] and says in body[field][0]


def test_another_organisation_or_a_non_member_gets_404(client, make, project, viewer,
                                                       foreign_org_key):
    record(project, "TEST_TOGGLED")
    stranger = make.user(project=make.project("Other"), role="admin")
    for credentials in ({"key": foreign_org_key}, {"token": token_for(stranger)}):
        answer = api(client, "GET", f"audit/?project={project.id}", **credentials)
        assert answer.status_code == 404 and "TEST_TOGGLED" not in answer.get_data(as_text=True)
    assert api(client, "GET", "audit/?project=2147483647",
               token=token_for(viewer)).status_code == 404
    assert listed(client, f"project={project.id}", token=token_for(viewer))["count"] >= 1
    assert api(client, "GET", f"audit/?project={project.id}").status_code == 401


def test_nul_characters_in_a_filter_are_refused(client, project, org_key):
    answer = api(client, "GET", f"audit/?project={project.id}&actor=a%00b", key=org_key)
    # By the endpoint's validation (422 on the field) or a guard in front of every request (400).
    assert answer.status_code in (400, 422) and "NUL" in answer.get_data(as_text=True)
