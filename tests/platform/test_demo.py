"""The demo `make run` seeds on an empty database: an admin, flags, segments, and a published
pipeline with flags already in flight."""

from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Feature, PipelineRun, ReleasePipeline, User
from webapp.services import demo


def test_seeds_an_empty_database_once(app):
    message = demo.seed_if_empty("boss@example.com", None)
    assert message.startswith("Sign in as boss@example.com with password ")
    assert db.session.scalar(select(func.count()).select_from(Feature)) == len(demo.DEMO_FLAGS)

    pipeline = db.session.scalar(select(ReleasePipeline).where(
        ReleasePipeline.name == demo.DEMO_PIPELINE))  # the demo has others: no row order assumed
    assert pipeline is not None and pipeline.published_at is not None
    in_flight = db.session.scalars(
        select(Feature.name).join(PipelineRun, PipelineRun.feature_id == Feature.id)
        .where(PipelineRun.pipeline_id == pipeline.id))
    assert sorted(in_flight) == sorted(demo.DEMO_PIPELINE_FLAGS)

    assert demo.seed_if_empty("other@example.com", "secret-password") is None
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_a_restart_says_how_to_sign_in_and_how_to_set_a_new_password(app):
    demo.seed_if_empty(None, None)
    assert demo.seed_if_empty(None, None) is None
    assert demo.sign_in_reminder(None) == (
        "Sign in as admin@railyard.local; forgot the password? "
        ".venv/bin/flask --app wsgi users set-password --email admin@railyard.local")
    assert demo.sign_in_reminder("nobody@example.com").startswith(
        "Sign in as admin@railyard.local;")


def test_no_reminder_without_a_site_admin(app):
    assert demo.sign_in_reminder(None) is None


def test_the_demo_has_a_guarded_pipeline_and_the_readme_curl_rolls_its_flag_back(
        app, client, time_machine):
    from datetime import timedelta

    from webapp.clock import now
    from webapp.models.health import ProjectIntegration
    from webapp.services.runs import sweep

    time_machine.move_to(now(), tick=False)
    message = demo.seed_if_empty("boss@example.com", "secret-password")
    secret = db.session.scalar(select(ProjectIntegration.alert_secret))
    assert f"/hooks/alerts/{secret}" in message
    sweep.drain()
    time_machine.shift(timedelta(seconds=10))
    sweep.drain()  # the first check: healthy, Development has no bake -> Staging, baking
    run = db.session.scalar(select(PipelineRun).join(Feature).where(Feature.name == "dark_mode"))
    assert (run.status, run.stage_position) == ("watching", 1)
    # The README's curl, as a request.
    response = client.post(f"/hooks/alerts/{secret}", json={"alerts": [{
        "status": "firing", "labels": {"alertname": "CheckoutErrors",
                                       "railyard_flag": "dark_mode"}}]})
    assert response.status_code == 200 and response.get_json()["runs_woken"] == 1
    db.session.rollback()  # end the test's read snapshot: the request committed since
    sweep.drain()
    db.session.rollback()
    run = db.session.get(PipelineRun, run.id)
    assert run.status == "rolled_back"
