"""Flask's signed cookie session, left out on the SDK API's paths.

SDK requests authenticate by environment key only and never read or write the session, yet
opening one per request (building the signing serializer, reading the cookie) and closing it
cost ~10 % of a `GET /api/v1/flags/`. On those paths the request gets Flask's null session:
reading it finds nothing, writing to it raises, and nothing is saved or signed.
"""

from flask.sessions import SecureCookieSessionInterface

SDK_PATHS = frozenset({"/api/v1/flags/", "/api/v1/identities/", "/api/v1/environment-document/"})


class SessionInterface(SecureCookieSessionInterface):
    def open_session(self, app, request):
        if request.path in SDK_PATHS:
            return self.null_session_class()
        return super().open_session(app, request)
