"""The demo organisation created on an empty database by `make run`."""

import secrets

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Environment, Feature, Project, Segment, User
from webapp.services.actors import SYSTEM
from webapp.services.pipelines import builder, health_checks
from webapp.services.platform import flags, projects, segments, users
from webapp.services.runs import alerts, controls

DEMO_FLAGS = [
    ("new_checkout", "The redesigned checkout flow", "none", None),
    ("dark_mode", "Dark colour scheme in the web app", "none", None),
    ("search_v2", "Search backed by the new index", "none", None),
    ("onboarding_tour", "Guided tour for new accounts", "none", None),
    ("banner_text", "Text of the top banner", "string", "Welcome to Demo"),
    ("max_upload_mb", "Largest upload accepted, in MB", "integer", 25),
    ("beta_reports", "Reports in beta", "none", None),
    ("recommendations", "Personalised recommendations", "none", None),
    ("fast_sync", "Use the faster sync protocol", "boolean", True),
    ("pricing_page_v3", "Third pricing page design", "none", None),
    ("referral_program", "Invite-a-friend rewards", "none", None),
    ("export_csv", "CSV export of reports", "none", None),
]

DEMO_SEGMENTS = [
    ("Beta testers", [{"type": "ALL", "conditions": [
        {"property": "beta", "operator": "EQUAL", "value": "true"}], "rules": []}]),
    ("Internal staff", [{"type": "ANY", "conditions": [
        {"property": "email", "operator": "REGEX", "value": r".*@railyard\.example$"},
        {"property": "plan", "operator": "EQUAL", "value": "staff"}], "rules": []}]),
]


# A published pipeline with two flags in flight, so the boards and the audit log have something
# to show from the first minute: (stage name = environment, wait in minutes, actions).
DEMO_PIPELINE = "Standard rollout"
DEMO_STAGES = [
    ("Development", 0, [{"action_type": "TOGGLE_FEATURE", "enabled": "true"}]),
    ("Staging", 2, [{"action_type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": "true",
                     "segment": "Beta testers"},
                    {"action_type": "TOGGLE_FEATURE", "enabled": "true"}]),
    ("Production", 5, [{"action_type": "PHASED_ROLLOUT", "rollout_initial": "10",
                        "rollout_step": "30", "rollout_every": "2", "rollout_unit": "minutes"}]),
]
DEMO_PIPELINE_FLAGS = ["search_v2", "onboarding_tour"]

# A guarded pipeline (issue 15): each stage watches alerts for the flag and rolls it back when one
# fires; Staging bakes for 30 minutes, so the README's curl finds dark_mode there.
GUARDED_PIPELINE = "Guarded rollout"
GUARDED_STAGES = [("Development", 0), ("Staging", 30), ("Production", 0)]
GUARDED_CHECK = {"kind": "ALERT", "name": "Alerts for this flag", "interval_seconds": "10",
                 "failures_to_trip": "1"}
GUARDED_FLAGS = ["dark_mode"]


def seed_if_empty(admin_email: str | None, admin_password: str | None) -> str | None:
    """Create the demo project and an admin on an empty database.

    Returns a message with the admin's credentials (the password only when generated), or None
    when the database already has users.
    """
    if db.session.scalar(select(User.id).limit(1)) is not None:
        return None
    email = admin_email or "admin@railyard.local"
    generated = admin_password is None
    password = admin_password or secrets.token_urlsafe(12)
    admin = users.create_user(email, password, name="Admin", site_admin=True)
    project = db.session.scalar(select(Project).where(Project.name == "Demo"))
    if project is None:
        project = projects.create_project("Demo", SYSTEM)
    projects.add_member(project, admin, "admin", SYSTEM, commit=False)
    for name, description, value_type, value in DEMO_FLAGS:
        flags.create_feature(project, name, SYSTEM, description=description, value_type=value_type,
                             default_value=value, commit=False)
    for name, rules in DEMO_SEGMENTS:
        segments.create_segment(project, name, rules, SYSTEM, commit=False)
    db.session.commit()
    _seed_pipeline(project)
    receiver = _seed_guarded_pipeline(project)
    if generated:
        return (f"Sign in as {email} with password {password} (shown once).\n"
                f"Demo alert receiver: /hooks/alerts/{receiver}")
    return (f"Sign in as {email} with the password from ADMIN_PASSWORD.\n"
            f"Demo alert receiver: /hooks/alerts/{receiver}")


def _seed_guarded_pipeline(project: Project) -> str:
    """The guarded demo pipeline with GUARDED_FLAGS in flight, and the project's alert receiver
    turned on. Returns the receiver's secret (the URL is /hooks/alerts/<secret>)."""

    environments = dict(db.session.execute(
        select(Environment.name, Environment.id).where(Environment.project_id == project.id)).all())
    pipeline = builder.create_pipeline(
        project, GUARDED_PIPELINE, SYSTEM,
        description="Each stage watches alerts naming the flag and rolls it back if one fires; "
                    "Staging bakes for 30 minutes.")
    for name, wait_minutes in GUARDED_STAGES:
        stage = builder.add_stage(pipeline, pipeline.version, SYSTEM, name=name,
                                    environment_id=environments[name])
        if wait_minutes:
            builder.update_stage(pipeline, pipeline.version, stage.id, {
                "trigger_type": "WAIT_FOR", "wait_amount": str(wait_minutes),
                "wait_unit": "minutes"}, SYSTEM)
        builder.add_action(pipeline, pipeline.version, stage.id,
                             {"action_type": "TOGGLE_FEATURE", "enabled": "true"}, SYSTEM)
        if name != "Production":
            health_checks.add_check(pipeline, pipeline.version, stage.id, GUARDED_CHECK, SYSTEM)
            health_checks.set_on_unhealthy(pipeline, pipeline.version, stage.id, "ROLL_BACK",
                                           SYSTEM)
    builder.publish_pipeline(pipeline, pipeline.version, SYSTEM)
    row = alerts.update_integrations(project, {"alert_receiver": "enable"}, SYSTEM)
    secret = row.alert_secret
    assert secret is not None  # "enable" made one
    feature_ids = list(db.session.scalars(select(Feature.id).where(
        Feature.project_id == project.id, Feature.name.in_(GUARDED_FLAGS))))
    controls.add_flags(project, pipeline.id, feature_ids, SYSTEM)
    return secret


# The command line's way back in when the printed password is lost (see webapp/cli.py).
SET_PASSWORD_COMMAND = ".venv/bin/flask --app wsgi users set-password --email {email}"


def sign_in_reminder(admin_email: str | None) -> str | None:
    """How to sign in to a database that already has users: the admin's email (ADMIN_EMAIL's
    user, else the first site admin) and the command that sets a new password. None without one.
    """
    admin = users.find_by_email(admin_email) if admin_email else None
    if admin is None:
        admin = db.session.scalar(
            select(User).where(User.is_site_admin.is_(True)).order_by(User.id).limit(1))
    if admin is None:
        return None
    return (f"Sign in as {admin.email}; forgot the password? "
            + SET_PASSWORD_COMMAND.format(email=admin.email))


def _seed_pipeline(project: Project) -> None:
    """The demo pipeline, published, with DEMO_PIPELINE_FLAGS added: the sweeper drives them."""
    environments = dict(db.session.execute(
        select(Environment.name, Environment.id).where(Environment.project_id == project.id)).all())
    segment_ids = dict(db.session.execute(
        select(Segment.name, Segment.id).where(Segment.project_id == project.id)).all())
    pipeline = builder.create_pipeline(
        project, DEMO_PIPELINE, SYSTEM,
        description="Development at once; Staging for beta testers, then everyone; "
                    "Production in a phased rollout.")
    for name, wait_minutes, actions in DEMO_STAGES:
        stage = builder.add_stage(pipeline, pipeline.version, SYSTEM, name=name,
                                    environment_id=environments[name])
        if wait_minutes:
            builder.update_stage(pipeline, pipeline.version, stage.id, {
                "trigger_type": "WAIT_FOR", "wait_amount": str(wait_minutes),
                "wait_unit": "minutes"}, SYSTEM)
        for action in actions:
            data = dict(action)
            if "segment" in data:
                data["segment_id"] = str(segment_ids[data.pop("segment")])
            builder.add_action(pipeline, pipeline.version, stage.id, data, SYSTEM)
    builder.publish_pipeline(pipeline, pipeline.version, SYSTEM)
    feature_ids = list(db.session.scalars(select(Feature.id).where(
        Feature.project_id == project.id, Feature.name.in_(DEMO_PIPELINE_FLAGS))))
    controls.add_flags(project, pipeline.id, feature_ids, SYSTEM)
