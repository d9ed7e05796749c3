"""Flask CLI commands: users, API keys, demo data, worker, and `run-all` (the README's run
command).
"""

import os
import signal
import subprocess
import sys
import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from webapp.extensions import db

users_cli = AppGroup("users", help="Manage user accounts.")
keys_cli = AppGroup("api-keys", help="Manage organisation API keys.")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name", default="")
@click.option("--site-admin", is_flag=True, help="Can create projects and users.")
def create_user(email: str, password: str, name: str, site_admin: bool) -> None:
    from webapp.services import users
    from webapp.services.errors import Invalid

    try:
        user = users.create_user(email, password, name=name, site_admin=site_admin)
    except Invalid as error:
        raise click.ClickException(
            "; ".join(m for ms in error.field_errors.values() for m in ms) or error.message
        ) from None
    click.echo(f"Created user {user.email}{' (site admin)' if site_admin else ''}.")


@keys_cli.command("create")
@click.option("--name", required=True)
def create_api_key(name: str) -> None:
    """Create an organisation API key; the key is the last line of output."""
    from webapp.services import api_keys, projects
    from webapp.services.actors import SYSTEM

    organisation = projects.default_organisation()
    row, secret = api_keys.create_organisation_key(organisation, name, SYSTEM)
    click.echo(f"Created API key {row.name} for organisation {organisation.name}. "
               "It is shown once; use it as `Authorization: Api-Key <key>`:")
    click.echo(secret)


def _seed() -> None:
    from webapp.services import demo

    message = demo.seed_if_empty(os.environ.get("ADMIN_EMAIL"), os.environ.get("ADMIN_PASSWORD"))
    if message:
        click.echo(message)


def _upgrade() -> None:
    from flask_migrate import upgrade

    upgrade()


def _worker(burst: bool = False) -> None:
    from rq import SimpleWorker

    from webapp import redis_conn

    # SimpleWorker runs jobs in this process (inside the app context): the engine batches due
    # runs per job, and a SIGKILL mid-job is recovered by the sweeper from the database.
    worker = SimpleWorker([redis_conn.queue()], connection=redis_conn.connection())
    worker.work(with_scheduler=True, burst=burst)


def _process_specs(app: Flask, host: str, port: int) -> list[tuple[str, list[str]]]:
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    specs = [
        ("web", [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "4",
                 "--bind", f"{host}:{port}", "--access-logfile", "-",
                 "--config", "python:webapp.gunicorn_conf", "wsgi:app"]),
        ("worker", [*flask, "worker"]),
    ]
    if "sweeper" in app.cli.list_commands(click.Context(app.cli)):
        specs.append(("sweeper", [*flask, "sweeper"]))
    return specs


def register(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(keys_cli)

    @app.cli.command("seed-demo")
    def seed_demo() -> None:
        """Create the demo project and admin on an empty database."""
        _seed()

    @app.cli.command("worker")
    @click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
    def worker(burst: bool) -> None:
        """Run an RQ worker with the scheduler (stage transitions, notifications)."""
        _worker(burst)

    @app.cli.command("sweeper")
    @click.option("--once", is_flag=True, help="One pass, then exit.")
    def sweeper(once: bool) -> None:
        """Re-drive overdue runs and deliver the outbox every SWEEP_INTERVAL_SECONDS."""
        from jobs import schedule

        if once:
            click.echo(schedule.sweep_once())
        else:
            schedule.run_forever()

    @app.cli.command("run-all")
    @click.option("--host", default=lambda: os.environ.get("HOST", "127.0.0.1"))
    @click.option("--port", default=lambda: int(os.environ.get("PORT", "5000")), type=int)
    def run_all(host: str, port: int) -> None:
        """Migrate, seed the demo, and run web + worker + sweeper (+ embedded Redis) until
        Ctrl-C.
        """
        from webapp import redis_conn

        embedded = None
        if not current_app.config["REDIS_URL"]:
            embedded = redis_conn.start_embedded(current_app.instance_path)
            current_app.config["REDIS_URL"] = redis_conn.redis_url_of(embedded)
            click.echo(f"Embedded Redis at {current_app.config['REDIS_URL']}")
        os.environ["REDIS_URL"] = current_app.config["REDIS_URL"]
        # Every child counts into the same folder; /metrics sums them (see webapp/metrics.py).
        from webapp import metrics

        os.environ[metrics.MULTIPROC_ENV] = metrics.prepare_multiproc_dir(
            current_app.instance_path)
        _upgrade()
        _seed()
        db.session.remove()
        children = []
        for name, command in _process_specs(current_app, host, port):
            children.append((name, subprocess.Popen(command, start_new_session=True)))
        click.echo(f"Railyard is running at http://{host}:{port}/  (Ctrl-C stops everything)")
        stopping = False

        def _stop(*_args):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stopping:
                for name, child in children:
                    if child.poll() is not None:
                        click.echo(f"{name} exited with {child.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            for _name, child in children:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            for _name, child in children:
                try:
                    child.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
            if embedded is not None:
                embedded.shutdown()
            click.echo("Stopped.")
