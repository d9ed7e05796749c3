"""Test data built through the services, so rows look exactly like the product makes them."""

import itertools

import pytest

from webapp.extensions import db
from webapp.services.actors import SYSTEM
from webapp.services.platform import flags, projects, segments, users

_counter = itertools.count(1)


class Make:
    def user(self, *, project=None, role="editor", site_admin=False, email=None,
             password="password123"):
        user = users.create_user(email or f"user{next(_counter)}@example.com", password,
                                 site_admin=site_admin)
        if project is not None:
            projects.add_member(project, user, role, SYSTEM)
        return user

    def project(self, name=None, environments=projects.DEFAULT_ENVIRONMENTS):
        return projects.create_project(name or f"Project {next(_counter)}", SYSTEM, environments)

    def feature(self, project, name=None, **kwargs):
        return flags.create_feature(project, name or f"flag_{next(_counter)}", SYSTEM, **kwargs)

    def segment(self, project, name=None, rules=None, **kwargs):
        rules = rules if rules is not None else [
            {"type": "ALL",
             "conditions": [{"property": "plan", "operator": "EQUAL", "value": "pro"}],
             "rules": []}
        ]
        return segments.create_segment(project, name or f"Segment {next(_counter)}", rules, SYSTEM,
                                       **kwargs)

    def environments(self, project):
        return projects.environments_of(project.id)


@pytest.fixture
def make(app):
    return Make()


@pytest.fixture
def project(make):
    return make.project("Acme")


@pytest.fixture
def editor(make, project):
    return make.user(project=project, role="editor", email="editor@example.com")


@pytest.fixture
def viewer(make, project):
    return make.user(project=project, role="viewer", email="viewer@example.com")


@pytest.fixture
def admin(make, project):
    return make.user(project=project, role="admin", email="admin@example.com")


@pytest.fixture
def session():
    return db.session
