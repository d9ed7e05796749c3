"""A receiver written only from Flagsmith's webhook documentation accepts Railyard's
FLAG_UPDATED unchanged: it checks `X-Flagsmith-Signature` as the docs show (hex HMAC-SHA256 of
the raw body, keyed by the utf-8 secret) and keeps a local flag cache from `data.new_state`,
the use case the docs give."""

import hashlib
import hmac
import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from webapp.extensions import db
from webapp.services.actors import SYSTEM, Actor
from webapp.services.governance import webhook_delivery, webhooks
from webapp.services.platform import flags

SECRET = "my shared secret"


class FlagsmithStyleReceiver(BaseHTTPRequestHandler):
    """400 unless the signature verifies and the documented fields parse."""

    def do_POST(self):  # noqa: N802
        request_body = self.rfile.read(int(self.headers["Content-Length"]))
        expected_signature = hmac.new(
            key=SECRET.encode(), msg=request_body, digestmod=hashlib.sha256).hexdigest()
        received_signature = self.headers["x-flagsmith-signature"] or ""
        if not hmac.compare_digest(expected_signature, received_signature):
            return self._answer(400, "bad signature")
        try:
            payload = json.loads(request_body)
            assert payload["event_type"] == "FLAG_UPDATED"
            data = payload["data"]
            state = data["new_state"]
            datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00"))
            key = (state["environment"]["id"], state["feature"]["name"],
                   (state["feature_segment"] or {}).get("segment", {}).get("name"))
            self.server.cache[key] = (state["enabled"], state["feature_state_value"])
            self.server.changed_by.append(data["changed_by"])
            previous = data["previous_state"]
            if previous is not None:
                assert previous["feature"]["id"] == state["feature"]["id"]
        except (KeyError, TypeError, ValueError, AssertionError) as error:
            return self._answer(400, f"unreadable: {error!r}")
        return self._answer(200, "thanks")

    def _answer(self, status, text):
        self.server.answers.append(status)
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def flagsmith_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlagsmithStyleReceiver)
    server.cache, server.changed_by, server.answers = {}, [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_flagsmith_receiver_reads_railyards_flag_updated(clock, make, project, editor, envs,
                                                           flagsmith_receiver):
    host, port = flagsmith_receiver.server_address[:2]
    webhooks.create_webhook(project, SYSTEM, url=f"http://{host}:{port}/flagsmith",
                            events=["FLAG_UPDATED"], secret=SECRET)
    banner = make.feature(project, "banner", value_type="string", default_value="hi")
    pros = make.segment(project, "Pros")
    me = Actor.for_user(editor)
    flags.set_state(banner, envs["Production"].id, me, enabled=True, raw_value="Sale!")
    flags.save_override(banner, envs["Production"].id, pros.id, me, enabled=True,
                        raw_value="Pro sale")
    webhook_delivery.deliver_due()
    db.session.expire_all()

    assert flagsmith_receiver.answers == [200, 200]
    assert flagsmith_receiver.cache == {
        (envs["Production"].id, "banner", None): (True, "Sale!"),
        (envs["Production"].id, "banner", "Pros"): (True, "Pro sale"),
    }
    assert flagsmith_receiver.changed_by == ["editor@example.com", "editor@example.com"]


def test_the_same_receiver_refuses_a_wrong_secret(clock, make, project, editor, envs,
                                                  flagsmith_receiver):
    host, port = flagsmith_receiver.server_address[:2]
    webhooks.create_webhook(project, SYSTEM, url=f"http://{host}:{port}/flagsmith",
                            events=["FLAG_UPDATED"], secret="not the shared one")
    flag = make.feature(project, "checkout")
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)
    webhook_delivery.deliver_due()
    assert flagsmith_receiver.answers == [400] and flagsmith_receiver.cache == {}
