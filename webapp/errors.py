"""Error answers: JSON for the API, a page or a fragment for the dashboard."""

from flask import Flask, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from webapp import htmx
from webapp.extensions import db
from webapp.services.errors import DomainError


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _answer(status: int, message: str, field_errors: dict | None = None):
    if _is_api():
        body: dict = {"detail": message}
        if field_errors:
            body.update(field_errors)
        return jsonify(body), status
    if htmx.is_htmx():
        # A small fragment; base.html shows it in the #flash area (htmx swaps 4xx, see base.html).
        fragment = render_template("_error_fragment.html", status=status, message=message)
        return htmx.retarget(make_response(fragment, status), "#flash")
    return render_template("error.html", status=status, message=message), status


def register(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain_error(error: DomainError):
        db.session.rollback()
        return _answer(error.status_code, error.message, error.field_errors)

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):
        return _answer(400, f"The form's security token is missing or wrong ({error.description}). "
                       "Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        response = app.make_response(_answer(error.code or 500, error.description or error.name))
        # Keep what the exception says about itself, e.g. `Allow` on a 405.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response
