"""Every GET and POST route of the dashboard, walked with hostile query strings and form bodies,
as a viewer and as an admin (with a valid CSRF token, so bodies reach the handlers): no 5xx.

The routes come from `app.url_map` (everything but /api/, which schemathesis walks, and static
files), so a route added later is walked too. Path arguments are filled with ids of a small
world holding one of everything; an argument the walker does not know gets id 1.

A route gets every hostile value only when its view read the first one (tests/support/
input_reads.py): a view that read none of its input answers the others alike, and the app-wide
guards that read every request's input meet each value on the routes that do read theirs.
"""

from urllib.parse import quote

import pytest
from flask import request
from flask_wtf import FlaskForm
from sqlalchemy import select, update
from wtforms.fields.core import UnboundField

from tests.support.input_reads import READS, read_any, recording
from webapp.extensions import db
from webapp.models import ChangeRequest, Environment, Membership, PipelineStage, ReleasePipeline
from webapp.models import StageAction as Action
from webapp.services.actors import SYSTEM, Actor
from webapp.services.platform import api_keys
from webapp.services.runs import controls, sweep

# Hostile text, already percent-encoded for a query string or a urlencoded body.
HOSTILE = [
    quote("²"), quote("١٢"), "-1", "0", "9" * 40, "", "%20", quote("%"), "%ED%A0%80", "%FF",
    "%00", quote("<script>alert(1)</script>"), quote("' OR 1=1--"), "1e999", "NaN",
    quote("=HYPERLINK(\"http://x.example\")"), "a" * 300, quote("r0.r0.c0"), quote("[]"),
]

# Names the views read straight from the request, plus every WTForms field name (below).
RAW_NAMES = [
    "feature", "from", "identifier", "next", "op", "open", "q", "run", "segment_id", "status",
    "s0", "s1", "s2", "launched", "before", "after", "cursor", "page", "limit", "what", "panel",
    "r0.type", "r0.c0.property", "r0.c0.operator", "r0.c0.value", "r0.r0.type",
    "stage_id", "action_id", "position", "percent", "confirm",
]

DEEP_RULES = "&".join(f"{'.'.join(['r0'] * depth)}.type=ALL" for depth in range(1, 201))


def _form_field_names() -> set[str]:
    """The field names of every WTForms form the app defines (forms added later included)."""
    names: set[str] = set()
    pending = list(FlaskForm.__subclasses__())
    while pending:
        form = pending.pop()
        pending.extend(form.__subclasses__())
        names.update(name for name in dir(form)
                     if isinstance(getattr(form, name, None), UnboundField))
    return names


@pytest.fixture
def world(make, project, viewer, editor):
    envs = {e.name: e for e in make.environments(project)}
    db.session.execute(update(Environment).where(Environment.id == envs["Production"].id)
                       .values(minimum_change_request_approvals=1))
    flag = make.feature(project, "checkout", value_type="string", default_value="v0")
    other = make.feature(project, "banner")
    segment = make.segment(project, "Beta")
    published = _pipeline(project, envs, "Release", "published", segment)
    draft = _pipeline(project, envs, "Draft", "draft", segment)
    bell = controls.add_flag(project, published.id, flag.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)  # waits for approval in Production
    token, _secret = api_keys.create_user_token(viewer, "laptop", SYSTEM)
    db.session.commit()
    request = db.session.scalar(select(ChangeRequest))
    run_id = bell.run_id
    stage = draft.stages[0]
    return {
        "project_id": project.id, "feature_id": other.id, "environment_id": envs["Staging"].id,
        "segment_id": segment.id, "pipeline_id": draft.id, "stage_id": stage.id,
        "action_id": stage.actions[0].id, "run_id": run_id,
        "request_id": request.id if request else 1, "token_id": token.id,
        "membership_id": db.session.scalar(select(Membership.id).where(
            Membership.user_id == viewer.id)),
        "what": "rollback",
    }


def _pipeline(project, envs, name, status, segment):
    pipeline = ReleasePipeline(project_id=project.id, name=name, status=status)
    for position, env in enumerate(("Development", "Production")):
        stage = PipelineStage(position=position, name=env, environment_id=envs[env].id,
                              trigger_type="ON_ENTER")
        stage.actions.append(Action(position=0, action_type="TOGGLE_FEATURE", enabled=True))
        stage.actions.append(Action(position=1, action_type="TOGGLE_FEATURE_FOR_SEGMENT",
                                    enabled=True, segment_id=segment.id))
        pipeline.stages.append(stage)
    db.session.add(pipeline)
    db.session.commit()
    return pipeline


DESTRUCTIVE = ("delete", "remove", "revoke", "rotate", "logout", "close", "reject", "commit")
# The walk is split into this many parts, each over a world of its own, so that the cores of a
# test run share its minutes.
PARTS = 3


def _routes(app):
    rules = [rule for rule in app.url_map.iter_rules()
             if not rule.rule.startswith("/api/") and rule.endpoint != "static"]
    # Destructive endpoints last, so the others still find the world they walk over.
    return sorted(rules, key=lambda r: (any(w in r.endpoint for w in DESTRUCTIVE), r.rule))


def _path(app, rule, world):
    values = {}
    for name, converter in rule._converters.items():
        if hasattr(converter, "items"):  # any(...): a value it takes
            values[name] = world[name] if world.get(name) in converter.items \
                else sorted(converter.items)[0]
        else:
            values[name] = world.get(name, 1)
    return app.url_map.bind("localhost").build(rule.endpoint, values)


def _walk(app, client, login, user, world, part):
    names = sorted(set(RAW_NAMES) | _form_field_names())
    sent = set(names)
    recording(app)
    failures = []
    for rule in _routes(app)[part::PARTS]:
        for method in ("GET", "POST"):
            if method not in rule.methods:
                continue
            path = _path(app, rule, world)
            login(client, user)  # again: a walked route may have signed the client out
            bodies = [None] if method == "GET" else []
            queries = ["&".join(f"{name}={value}" for name in names) for value in HOSTILE]
            if method == "POST":
                bodies = queries + [DEEP_RULES, "[" * 100_000]
                queries = ["run=%C2%B2&s0=%C2%B2"]
            requests = [(query, body) for query in queries for body in bodies]
            for index, (query, body) in enumerate(requests):
                if index == 1 and not read_any(sent):
                    break  # its view read none of the first: the others would reach nothing
                kwargs = {"method": method, "query_string": query}
                if body is not None:
                    kwargs["data"] = body
                    kwargs["content_type"] = ("application/json" if body.startswith("[")
                                              else "application/x-www-form-urlencoded")
                try:
                    response = client.open(path, **kwargs)
                except Exception as error:  # noqa: BLE001  (TESTING propagates; live: 500)
                    failures.append((method, path, query[:60], (body or "")[:60],
                                     repr(error)[:120]))
                    login(client, user)
                    continue
                assert b"security token is missing" not in response.data  # reached the view
                if response.status_code >= 500:
                    failures.append((method, path, query[:60], (body or "")[:60],
                                     response.status_code))
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("part", range(PARTS))
@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_no_dashboard_route_answers_5xx_to_hostile_input(app, client, login, make, project,
                                                          viewer, world, role, part):
    user = viewer if role == "viewer" else make.user(project=project, role="admin",
                                                       site_admin=True, email="root@example.com")
    failures = _walk(app, client, login, user, world, part)
    assert failures == [], "\n".join(map(str, failures))


def test_the_walk_knows_what_a_view_read(app, client):
    """The walk's shortcut rests on this: what a view reads is seen; what only the guards read
    before it is not; a request no view answered says nothing."""
    recording(app)
    app.add_url_rule("/probe/one", "one", lambda: request.args.get("q", ""))
    app.add_url_rule("/probe/all", "all", lambda: str(dict(request.form)), methods=["POST"])
    app.add_url_rule("/probe/none", "none", lambda: "", methods=["GET", "POST"])
    app.add_url_rule("/probe/json", "json", lambda: str(request.get_json()), methods=["POST"])
    sent = {"q", "name"}

    client.get("/probe/one?q=1&name=2")
    assert READS.names == {"q"} and read_any(sent)
    client.post("/probe/all", data={"name": "x"})
    assert read_any({"other"})
    client.post("/probe/none?q=1", data={"name": "x"})  # CSRF and the text guard read it all
    assert READS.viewed and not read_any(sent)
    client.post("/probe/json", json={"name": "x"})
    assert read_any(sent)
    client.get("/probe/none?q=%00")  # refused by the guard: no view ran
    assert not READS.viewed and read_any(sent)
