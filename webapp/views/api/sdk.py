"""The SDK API: what applications read flags from, with the official Flagsmith SDKs."""

from typing import Any

from flask import Response, abort, request

from webapp.services.platform import analytics, identities, sdk_documents
from webapp.services.platform.sdk_documents import Documents, EnvironmentRef
from webapp.views.api import bp
from webapp.views.api.common import operation
from webapp.views.api.schemas import (
    EnvironmentDocumentSchema,
    IdentityRequestSchema,
    IdentityResponseSchema,
    SdkFlagSchema,
)

SDK = {"auth": "environment", "errors": (400, 401, 403, 404, 422)}

JSON = "application/json"
# The JS SDK keeps this as its timestamp and ignores realtime events that are not newer.
UPDATED_AT = "X-Flagsmith-Document-Updated-At"


def _epoch(docs: Documents) -> str:
    return f"{docs.updated_at:.6f}"


def _environment(server_only: bool = False) -> EnvironmentRef:
    key = request.headers.get("X-Environment-Key", "")
    if not key:
        abort(401, "Missing X-Environment-Key header.")
    ref = sdk_documents.find_environment(key)
    if ref is None:
        abort(401, "Invalid X-Environment-Key.")
    if server_only and not ref.server_key_used:
        abort(403, "The environment document needs a server-side key (ser.…).")
    return ref


def _cached(docs: Documents, body: bytes) -> Response:
    # Conditional answers by ETag only: Last-Modified is sent for clients that show it, but
    # an If-Modified-Since alone is not trusted with a 304, as whole seconds cannot tell two
    # revisions in the same second apart (and deleting a flag moves no timestamp).
    headers = {"ETag": f'"{docs.etag}"', "Last-Modified": docs.last_modified,
               "Cache-Control": "no-cache", "Vary": "X-Environment-Key",
               UPDATED_AT: _epoch(docs)}
    if request.if_none_match.contains(docs.etag):
        return Response(status=304, headers=headers)
    return Response(body, mimetype=JSON, headers=headers)


@bp.get("/flags/")
@operation("The environment's flags (?feature=<name> for one)", "SDK", response=SdkFlagSchema,
           many=True, query={"feature": {"type": "string", "required": False}}, **SDK)
def flags():
    """The environment's flags (environment defaults), or one with ?feature=<name>."""
    ref = _environment()
    docs = sdk_documents.documents_for(ref)
    name = request.args.get("feature")
    if name is None:
        return _cached(docs, docs.flags_json)
    body = docs.flag_json_by_name.get(name)
    if body is None:
        abort(404, "Given feature not found.")
    return _cached(docs, body)


@bp.get("/environment-document/")
@operation("The environment document for local evaluation (server keys)", "SDK",
           response=EnvironmentDocumentSchema, **SDK)
def environment_document():
    """The document the SDKs' local-evaluation mode consumes (server keys only)."""
    ref = _environment(server_only=True)
    docs = sdk_documents.documents_for(ref)
    return _cached(docs, docs.environment_document_json)


@bp.post("/identities/")
@operation("Identify: the identity's flags, evaluated on its traits", "SDK",
           body=IdentityRequestSchema, response=IdentityResponseSchema, **SDK)
def identify():
    """An identity's flags, evaluated on its persisted traits merged with those sent.

    A missing or blank identifier, or `"transient": true`, is a transient identity: evaluated on
    the traits sent and never stored (flagsmith-cli identifies so)."""
    ref = _environment()
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        abort(400, "Send a JSON object: {identifier, traits: [{trait_key, trait_value}]}.")
    traits = identities.check_traits(payload.get("traits"))
    identifier, transient = identities.resolve_identifier(
        payload.get("identifier"), traits, transient=payload.get("transient") is True)
    docs = sdk_documents.documents_for(ref)
    effective = identities.identify(ref.id, identifier, traits, transient=transient)
    return _identity_response(docs, identifier, effective)


@bp.get("/identities/")
@operation("An identity's flags on its stored traits", "SDK", response=IdentityResponseSchema,
           query={"identifier": {"type": "string", "required": True}}, **SDK)
def identity():
    """An identity's flags on its persisted traits (nothing is written)."""
    ref = _environment()
    identifier = identities.check_identifier(request.args.get("identifier"))
    docs = sdk_documents.documents_for(ref)
    return _identity_response(docs, identifier, identities.persisted_traits(ref.id, identifier))


def _identity_response(docs: Documents, identifier: str, traits: dict[str, Any]) -> Response:
    response = Response(sdk_documents.identity_json(docs, identifier, traits), mimetype=JSON)
    response.headers[UPDATED_AT] = _epoch(docs)
    return response


@bp.post("/analytics/flags/")
@operation("Flag analytics: how often the SDK evaluated each flag ({\"<flag name>\": count})",
           "SDK", **SDK)
def analytics_flags():
    """Count the evaluations an SDK reports (buffered; shown on the flag page and the board)."""
    ref = _environment()
    analytics.record(ref.id, analytics.check_counts(request.get_json(silent=True)))
    return Response(b"{}", mimetype=JSON)
