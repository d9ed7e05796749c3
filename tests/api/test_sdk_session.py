"""SDK requests carry no cookie session: the app's session interface (the one that also marks
the cookie Secure over HTTPS) opens none on the SDK paths, and signs and saves none."""

import pytest
from flask import request
from flask.sessions import NullSession, SecureCookieSession

from webapp.sessions import SDK_PATHS


@pytest.mark.parametrize("path", sorted(SDK_PATHS))
def test_sdk_paths_get_no_session(app, path):
    with app.test_request_context(path, base_url="https://railyard.test"):
        session = app.session_interface.open_session(app, request)
        assert isinstance(session, NullSession)
        with pytest.raises(RuntimeError):
            session["_user_id"] = "1:0"  # nothing could be signed in through an SDK path


def test_dashboard_paths_still_get_a_secure_cookie_session(app):
    with app.test_request_context("/projects", base_url="https://railyard.test"):
        session = app.session_interface.open_session(app, request)
        assert isinstance(session, SecureCookieSession)
        assert app.session_interface.get_cookie_secure(app)

