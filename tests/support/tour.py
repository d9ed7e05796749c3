"""A tour of every dashboard page in three states, shared by the screenshot script
(scripts/screenshots.py) and the accessibility check (tests/a11y/test_axe.py); both walk it in
a browser with tests/support/tour_walk.py.

- "empty": a project with nothing in it but its environments (a new project);
- "typical": the demo organisation `make run` creates, with flags launched through a quick
  pipeline (the charts have bars), a change request waiting for approval, a webhook, a
  255-character flag name and pipeline name, a five-stage pipeline and a viewer;
- "large": a 30-stage draft pipeline and, in the screenshot script, 10,000 flags.

Everything is made through the services, so the pages show what the product makes. Call inside
an app context with an empty database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    ChangeRequest,
    Environment,
    Feature,
    PipelineRun,
    Project,
    ReleasePipeline,
    Segment,
)
from webapp.services import demo
from webapp.services.actors import SYSTEM
from webapp.services.governance import webhooks
from webapp.services.pipelines import builder as pipelines
from webapp.services.platform import flags, projects, users
from webapp.services.runs import calendar
from webapp.services.runs import controls as runs
from webapp.services.runs import sweep as engine

PASSWORD = "tour-password-1"
ADMIN_EMAIL = "admin@railyard.local"
VIEWER_EMAIL = "viewer@railyard.local"
LONG_NAME = ("a_flag_whose_name_is_as_long_as_names_may_be_" * 6)[:255]
LONG_PIPELINE = ("A pipeline whose name is as long as a name may be, " * 6)[:255].strip()
MAX_STAGES = 30


@dataclass
class Page:
    """One page of the tour: a file-friendly name, its path, and who looks at it."""

    name: str
    path: str
    viewer: bool = False


@dataclass
class Tour:
    pages: list[Page] = field(default_factory=list)

    def add(self, name: str, path: str, *, viewer: bool = False) -> None:
        self.pages.append(Page(name, path, viewer))


def build(large_flags: int = 0) -> Tour:
    """Make the three states in one database and return every page to visit (admin first,
    then the viewer's). `large_flags` flags are added to the large project."""
    demo.seed_if_empty(ADMIN_EMAIL, PASSWORD)
    admin = users.find_by_email(ADMIN_EMAIL)
    assert admin is not None
    typical = db.session.scalar(select(Project).where(Project.name == "Demo"))
    assert typical is not None
    viewer = users.create_user(VIEWER_EMAIL, PASSWORD, name="Vera Viewer")
    projects.add_member(typical, viewer, "viewer", SYSTEM)
    ids = _typical(typical)
    empty = projects.create_project("Empty project", SYSTEM)
    projects.add_member(empty, admin, "admin", SYSTEM)
    large = projects.create_project("Large project", SYSTEM)
    projects.add_member(large, admin, "admin", SYSTEM)
    long_pipeline = _pipeline_of_stages(large, "Thirty stages", MAX_STAGES)
    _many_flags(large, large_flags)

    tour = Tour()
    tour.add("login", "/login")
    tour.add("projects", "/")
    tour.add("profile", "/profile")
    tour.add("notifications", "/notifications")
    tour.add("admin-users", "/admin/users")
    tour.add("api-docs", "/api/v1/docs/")
    tour.add("admin-calendar", "/admin/calendar")
    for state, project in (("empty", empty), ("typical", typical), ("large", large)):
        base = f"/projects/{project.id}"
        for name, path in [("home", ""), ("flags", "/flags"), ("segments", "/segments"),
                           ("segment-new", "/segments/new"), ("pipelines", "/pipelines"),
                           ("board", "/board"), ("change-requests", "/change-requests"),
                           ("audit", "/audit"), ("settings", "/settings"),
                           ("webhooks", "/settings/webhooks"),
                           ("calendar", "/settings/calendar")]:
            tour.add(f"{state}-{name}", base + path)
    base = f"/projects/{typical.id}"
    for name, path in [
        ("flag", f"/flags/{ids['flag']}"),
        ("flag-in-flight", f"/flags/{ids['moving_flag']}"),
        ("flag-long-name", f"/flags/{ids['long_flag']}"),
        ("flag-delete", f"/flags/{ids['flag']}/delete"),
        ("segment", f"/segments/{ids['segment']}"),
        ("segment-delete", f"/segments/{ids['segment']}/delete"),
        ("pipeline", f"/pipelines/{ids['pipeline']}"),
        ("pipeline-new", f"/pipelines/{ids['new_pipeline']}"),
        ("pipeline-draft", f"/pipelines/{ids['draft']}"),
        ("pipeline-five-stages", f"/pipelines/{ids['five']}"),
        ("pipeline-long-name", f"/pipelines/{ids['long_pipeline']}"),
        ("pipeline-board", f"/pipelines/{ids['pipeline']}/board"),
        ("pipeline-board-launched", f"/pipelines/{ids['quick']}/board"),
        ("pipeline-board-new", f"/pipelines/{ids['new_pipeline']}/board"),
        ("pipeline-publish", f"/pipelines/{ids['draft']}/publish"),
        ("pipeline-unpublish", f"/pipelines/{ids['new_pipeline']}/unpublish"),
        ("pipeline-clone", f"/pipelines/{ids['pipeline']}/clone"),
        ("pipeline-delete", f"/pipelines/{ids['draft']}/delete"),
        ("run-rollback", f"/runs/{ids['run']}/rollback"),
        ("run-remove", f"/runs/{ids['run']}/remove"),
        ("change-request", f"/change-requests/{ids['request']}"),
        ("change-request-batch", f"/change-requests/stage/{ids['request_stage']}"),
        ("webhook-deliveries", f"/settings/webhooks/{ids['webhook']}/deliveries"),
    ]:
        tour.add(f"typical-{name}", base + path)
    tour.add("large-pipeline-thirty-stages", f"/projects/{large.id}/pipelines/{long_pipeline}")
    tour.add("large-pipeline-thirty-stages-board",
             f"/projects/{large.id}/pipelines/{long_pipeline}/board")
    # What a viewer sees: the navigation without Settings, a refusal with the navigation kept.
    tour.add("viewer-flags", f"{base}/flags", viewer=True)
    tour.add("viewer-pipeline", f"{base}/pipelines/{ids['pipeline']}", viewer=True)
    tour.add("viewer-settings-refused", f"{base}/settings", viewer=True)
    return tour


def _typical(project: Project) -> dict[str, int]:
    """Add to the demo project what a project some weeks old has."""
    envs = {e.name: e for e in projects.environments_of(project.id)}
    flag = _feature_id(project, "new_checkout")
    segment = db.session.scalar(select(Segment.id).where(Segment.project_id == project.id))
    assert segment is not None
    long_flag = flags.create_feature(project, LONG_NAME, SYSTEM,
                                     description="A name at the length limit.").id
    # A pipeline whose flags have all launched: the board's chart has bars.
    quick = _published(project, "Quick release", [("Development", "Development"),
                                                   ("Staging", "Staging")])
    quick_flags = [flags.create_feature(project, f"quick_{n}", SYSTEM).id for n in range(6)]
    runs.add_flags(project, quick, quick_flags, SYSTEM)
    engine.drain()
    engine.drain()
    new_pipeline = _published(project, "Just published", [("Development", "Development")])
    five = _published(project, "Five stages", [
        ("Development", "Development"), ("QA sign-off", "Staging"), ("Staging", "Staging"),
        ("Early customers", "Production"), ("Everyone", "Production")])
    long_pipeline = pipelines.create_pipeline(project, LONG_PIPELINE, SYSTEM).id
    draft = _pipeline_of_stages(project, "Draft in progress", 2, publish=False)
    # Production needs an approval: a pipeline into it opens a change request.
    db.session.execute(update(Environment).where(Environment.id == envs["Production"].id)
                       .values(minimum_change_request_approvals=1))
    db.session.commit()
    gated = _published(project, "Straight to production", [("Production", "Production")])
    moving = flags.create_feature(project, "gated_launch", SYSTEM).id
    runs.add_flags(project, gated, [moving], SYSTEM)
    engine.drain()
    request = db.session.scalar(select(ChangeRequest).order_by(ChangeRequest.id.desc()))
    assert request is not None
    standard = db.session.scalar(select(ReleasePipeline.id).where(
        ReleasePipeline.project_id == project.id, ReleasePipeline.name == demo.DEMO_PIPELINE))
    run = db.session.scalar(select(PipelineRun.id).where(PipelineRun.pipeline_id == standard))
    assert standard is not None and run is not None
    # Production ships Monday to Thursday, 09:00-16:00 in Berlin, and a freeze is planned.
    calendar.set_windows(envs["Production"].id, "Europe/Berlin",
                         [calendar.Window(day, 9 * 60, 16 * 60) for day in range(4)], SYSTEM)
    soon = clock_now() + timedelta(days=7)
    calendar.create_freeze(SYSTEM, organisation_id=project.organisation_id, project_id=project.id,
                           starts_at=soon, ends_at=soon + timedelta(days=14),
                           reason="Year-end freeze", environment_ids=[envs["Production"].id])
    hook = webhooks.create_webhook(project, SYSTEM, url="https://93.184.215.14/railyard",
                                   events=["change_request.opened"])
    return {"flag": flag, "moving_flag": _feature_id(project, demo.DEMO_PIPELINE_FLAGS[0]),
            "long_flag": long_flag, "segment": segment, "pipeline": standard,
            "new_pipeline": new_pipeline, "draft": draft, "five": five,
            "long_pipeline": long_pipeline, "quick": quick, "run": run,
            "request": request.id, "request_stage": request.stage_id or 0,
            "webhook": hook.id}


def _feature_id(project: Project, name: str) -> int:
    found = db.session.scalar(select(Feature.id).where(Feature.project_id == project.id,
                                                       Feature.name == name))
    assert found is not None
    return found


def _published(project: Project, name: str, stages: list[tuple[str, str]]) -> int:
    """A published pipeline whose stages each turn the flag on at once."""
    envs = {e.name: e.id for e in projects.environments_of(project.id)}
    pipeline = pipelines.create_pipeline(project, name, SYSTEM)
    for stage_name, env in stages:
        stage = pipelines.add_stage(pipeline, pipeline.version, SYSTEM, name=stage_name,
                                    environment_id=envs[env])
        pipelines.add_action(pipeline, pipeline.version, stage.id,
                             {"action_type": "TOGGLE_FEATURE", "enabled": "true"}, SYSTEM)
    pipelines.publish_pipeline(pipeline, pipeline.version, SYSTEM)
    return pipeline.id


def _pipeline_of_stages(project: Project, name: str, count: int, *, publish: bool = False
                        ) -> int:
    """A draft with `count` configured stages, cycling through the environments."""
    envs = projects.environments_of(project.id)
    pipeline = pipelines.create_pipeline(project, name, SYSTEM)
    for n in range(count):
        env = envs[n % len(envs)]
        stage = pipelines.add_stage(pipeline, pipeline.version, SYSTEM,
                                    name=f"Stage {n + 1} · {env.name}", environment_id=env.id)
        if n:
            pipelines.update_stage(pipeline, pipeline.version, stage.id, {
                "trigger_type": "WAIT_FOR", "wait_amount": "2", "wait_unit": "hours"}, SYSTEM)
        pipelines.add_action(pipeline, pipeline.version, stage.id,
                             {"action_type": "TOGGLE_FEATURE", "enabled": "true"}, SYSTEM)
    if publish:
        pipelines.publish_pipeline(pipeline, pipeline.version, SYSTEM)
    return pipeline.id


def _many_flags(project: Project, count: int) -> None:
    for n in range(count):
        flags.create_feature(project, f"flag_{n:05d}", SYSTEM, commit=False)
        if n % 500 == 499:
            db.session.commit()
    db.session.commit()


