"""The demo organisation created on an empty database by `make run`."""

import secrets

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Project, User
from webapp.services import flags, projects, segments, users
from webapp.services.actors import SYSTEM

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
    if generated:
        return f"Sign in as {email} with password {password} (shown once)."
    return f"Sign in as {email} with the password from ADMIN_PASSWORD."
