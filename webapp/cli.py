"""Flask CLI commands: users, API keys, demo data, worker, and `run-all` (the README's run
command).
"""

import gc
import os
import sys

import click
from flask import Flask
from flask.cli import AppGroup
from flask_migrate import upgrade

from jobs import schedule
from jobs.worker import JobWorker
from webapp import redis_conn, streams
from webapp import run_all as runner
from webapp.extensions import app_object, db
from webapp.services import demo
from webapp.services.actors import SYSTEM
from webapp.services.errors import Invalid
from webapp.services.platform import api_keys, projects, users
from webapp.services.runs import sweep

users_cli = AppGroup("users", help="Manage user accounts.")
keys_cli = AppGroup("api-keys", help="Manage organisation API keys.")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name", default="")
@click.option("--site-admin", is_flag=True, help="Can create projects and users.")
def create_user(email: str, password: str, name: str, site_admin: bool) -> None:

    try:
        user = users.create_user(email, password, name=name, site_admin=site_admin)
    except Invalid as error:
        raise click.ClickException(
            "; ".join(m for ms in error.field_errors.values() for m in ms) or error.message
        ) from None
    click.echo(f"Created user {user.email}{' (site admin)' if site_admin else ''}.")


@users_cli.command("set-password")
@click.option("--email", required=True)
@click.password_option("--password", help="Prompted for (twice) when not given.")
def set_password(email: str, password: str) -> None:
    """Give a user a new password (for example the demo admin's, when it is lost)."""

    try:
        user = users.set_password(email, password)
    except Invalid as error:
        raise click.ClickException(
            "; ".join(m for ms in error.field_errors.values() for m in ms) or error.message
        ) from None
    click.echo(f"Password of {user.email} set.")


@keys_cli.command("create")
@click.option("--name", required=True)
def create_api_key(name: str) -> None:
    """Create an organisation API key; the key is the last line of output."""

    organisation = projects.default_organisation()
    row, secret = api_keys.create_organisation_key(organisation, name, SYSTEM)
    click.echo(f"Created API key {row.name} for organisation {organisation.name}. "
               "It is shown once; use it as `Authorization: Api-Key <key>`:")
    click.echo(secret)


def _seed() -> None:

    admin_email = os.environ.get("ADMIN_EMAIL")
    message = demo.seed_if_empty(admin_email, os.environ.get("ADMIN_PASSWORD"))
    click.echo(message or demo.sign_in_reminder(admin_email) or "No site admin yet: "
               ".venv/bin/flask --app wsgi users create --email E --password P --site-admin")


def _upgrade() -> None:

    upgrade()


def _worker(burst: bool = False) -> None:
    # Jobs run in this process (jobs/worker.py); a SIGKILL mid-job is recovered by the
    # sweeper from the database.
    worker = JobWorker([redis_conn.queue()], connection=redis_conn.connection())
    sweep.warm_up()
    # RQ forks its scheduler from this process. What the app made so far (~150,000 objects)
    # leaves the cyclic GC: a full collection would write to every page holding one, taking
    # them back from the fork one by one (its memory twice over), and pause the jobs.
    gc.freeze()
    worker.work(with_scheduler=True, burst=burst)


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
        if once:
            click.echo(schedule.sweep_once())
        else:
            gc.freeze()  # the loaded app leaves the cyclic GC, as in the worker
            schedule.run_forever()

    @app.cli.command("realtime")
    @click.option("--host", default=lambda: os.environ.get("HOST", "127.0.0.1"))
    @click.option("--port", default=lambda: int(os.environ.get("REALTIME_PORT", "5001")),
                  type=int)
    def realtime(host: str, port: int) -> None:
        """Serve the SDKs' realtime streams (GET /sse/environments/<key>/stream)."""
        click.echo(f"Realtime streams at http://{host}:{port}/")
        streams.run(app_object(), host, port)

    @app.cli.command("run-all")
    @click.option("--host", default=lambda: os.environ.get("HOST", "127.0.0.1"))
    @click.option("--port", default=lambda: int(os.environ.get("PORT", "5000")), type=int)
    @click.option("--realtime-port", type=int,
                  default=lambda: int(os.environ.get("REALTIME_PORT", "0")) or None,
                  help="The SDKs' realtime stream server (default: --port + 1).")
    def run_all(host: str, port: int, realtime_port: int | None) -> None:
        """Migrate, seed the demo, and run web + worker + sweeper (+ embedded Redis) until
        Ctrl-C.
        """
        def seed() -> None:
            _seed()
            db.session.remove()
            # Closed now, not at exit: SQLite's last close checkpoints the WAL (an fsync), which
            # on a busy disk took seconds out of the stop.
            db.engine.dispose()

        status = runner.run(app_object(), host, port, _upgrade, seed,
                            realtime_port)
        # Everything has stopped: leave now. Tearing down an interpreter that imported the
        # whole app took seconds on a busy machine, after "Stopped." was printed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
