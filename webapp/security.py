"""Headers a dashboard is expected to send, and cookies marked Secure over HTTPS.

The Content-Security-Policy allows no inline script and no eval: every script is a file under
/static (htmx, configured by its meta tag with eval off), so injected markup cannot run code.
Behind a TLS-terminating proxy, set PROXY_FIX_HOPS to the number of proxies in front so the
request's scheme (X-Forwarded-Proto) and client address (X-Forwarded-For) are the real ones.
"""

from flask import Flask, Response, has_request_context, request
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp.sessions import SessionInterface

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


class _SessionInterface(SessionInterface):
    """The session cookie is Secure whenever the request came over HTTPS (or always, with
    SESSION_COOKIE_SECURE), so one configuration serves both a plain local run and TLS. SDK
    paths still get no session at all (webapp/sessions.py): this replaces the app's session
    interface, so it must keep that behaviour (a merge once lost it, ~10 % of a flags read)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app)
                    or (has_request_context() and request.is_secure))


def register(app: Flask) -> None:
    hops = int(app.config.get("PROXY_FIX_HOPS") or 0)
    if hops > 0:
        # Flask's documented way to add WSGI middleware; its stubs declare wsgi_app a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)
    app.session_interface = _SessionInterface()

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
