"""Helpers of the release-pipeline API tests: calling the admin API as someone, and pipeline
bodies in the wire format."""

from webapp.extensions import db
from webapp.services import api_keys
from webapp.services.actors import SYSTEM


def call(client, method, path, key=None, token=None, **kwargs):
    """/api/v1/<path> with an organisation key or a personal token."""
    headers = {}
    if key:
        headers["Authorization"] = f"Api-Key {key}"
    if token:
        headers["Authorization"] = f"Token {token}"
    response = client.open(f"/api/v1/{path}", method=method, headers=headers, **kwargs)
    db.session.rollback()  # end the test's SQLite read snapshot: see what the request did
    return response


def token_for(user):
    return api_keys.create_user_token(user, "laptop", SYSTEM)[1]


def toggle(enabled=True):
    return {"action_type": "TOGGLE_FEATURE", "action_body": {"enabled": enabled}}


def stage(env, name=None, actions=None, wait=None, **extra):
    trigger = ({"trigger_type": "WAIT_FOR", "trigger_body": {"wait_for": wait}} if wait
               else {"trigger_type": "ON_ENTER", "trigger_body": None})
    return {"name": name or env.name, "environment": env.id, "trigger": trigger,
            "actions": [toggle()] if actions is None else actions, **extra}


def two_stages(platform, name="Web release"):
    """Development at once, then Production a day later."""
    return {"name": name, "description": "Dev, then prod", "stages": [
        stage(platform.development, "Dev"),
        stage(platform.production, "Prod", wait="1 00:00:00"),
    ]}


def pipelines_path(project, pipeline_id=None, suffix=""):
    path = f"projects/{project.id}/release-pipelines/"
    return path if pipeline_id is None else f"{path}{pipeline_id}/{suffix}"


def create(client, project, key, body):
    response = call(client, "POST", pipelines_path(project), key=key, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def published(client, project, key, body):
    pipeline = create(client, project, key, body)
    response = call(client, "POST", pipelines_path(project, pipeline["id"], "publish-pipeline/"),
                    key=key)
    assert response.status_code == 200, response.get_json()
    return response.get_json()
