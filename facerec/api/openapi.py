"""The OpenAPI 3.1 document of facerec's native API (:mod:`facerec.api.native`), served at
``/openapi.json``, and a small HTML page listing its routes (``/api/facerec/v1/docs``)."""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

PREFIX = "/api/facerec/v1"

_REF = "#/components/schemas/"


def _ref(name: str) -> dict:
    return {"$ref": _REF + name}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    """The error responses a route can give (always 401/403 for keys, 503 when busy)."""
    what = {400: "bad request (see error.code)", 401: "missing, wrong or revoked key (missing_key, invalid_key)",
            403: "this key's scope may not do this (forbidden)", 404: "unknown person or photo",
            409: "needs confirmation or a merge (confirmation_needed with concerns; person_exists)",
            413: "request body too large (body_too_large)", 422: "no face, or several faces (no_face, several_faces)",
            500: "forget_incomplete (with report: what is left) or internal", 503: "server busy (busy)",
            507: "disk full (disk_full)"}
    return {str(s): _json(_ref("Error"), what[s]) for s in sorted({401, 403, 503, *statuses})}


_PHOTO_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"description": "the photo (JPEG, PNG, WebP, ...; at most 20 MB); enrol takes several `file` "
                                   "fields", "type": "array", "items": {"type": "string", "contentMediaType":
                                                                         "application/octet-stream"}}}}},
        "application/json": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "description": "the photo, base64"},
            "files": {"type": "array", "items": {"type": "string"}, "description": "several photos, base64 (enrol)"}}}},
    },
}


def _param(name: str, where: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            "description": description}


_NAME = _param("name", "path", {"type": "string"}, "the person's name (URL-encoded)")
_FILE = _param("file", "path", {"type": "string"}, "the photo's file name, as `GET /people/{name}` lists it")


def _schemas() -> dict:
    box = {"type": "object", "required": ["x", "y", "width", "height"], "description":
           "pixels of the photo as displayed (EXIF-rotated)", "properties": {
               k: {"type": "number"} for k in ("x", "y", "width", "height")}}
    face = {"type": "object", "required": ["box", "verdict", "score", "label", "candidates"], "properties": {
        "box": box, "detection_score": {"type": "number"},
        "verdict": {"type": "string", "enum": ["match", "possible match", "unknown"],
                    "description": "match: at least a third of the way from the threshold to 1; possible match: "
                                   "at or just above the threshold; unknown: below it"},
        "name": {"type": "string", "description": "the person (left out when unknown)"},
        "score": {"type": "number", "description": "raw similarity to the best person, in [0, 1]"},
        "label": {"type": "string", "description": "what the app draws: `Ann`, `Ann?` or `unknown`"},
        "candidates": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "score": {"type": "number"}}}}}}
    outcome = {"type": "object", "required": ["file", "status"], "properties": {
        "file": {"type": "string"},
        "status": {"type": "string", "enum": ["saved", "already_enrolled", "duplicate", "needs_confirmation",
                                              "refused"]},
        "concerns": {"type": "array", "items": {"type": "string"},
                     "description": "what must be confirmed (confirm=true) before it is saved"},
        "reason": {"type": "string", "description": "why it was refused or skipped"},
        "image_id": {"type": "string", "format": "uuid"}, "stored_as": {"type": "string"}}}
    report = {"type": "object", "required": ["name", "problems", "complete"], "properties": {
        "name": {"type": "string"}, **{k: {"type": "integer"} for k in
                                      ("photos", "vectors", "tag_photos", "tag_matches", "sightings")},
        "cluster_groups": {"type": "array", "items": {"type": "string"}},
        "problems": {"type": "array", "items": {"type": "string"}, "description": "what is left (empty: all gone)"},
        "complete": {"type": "boolean"}}}
    error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "enum": ["missing_key", "invalid_key", "forbidden", "bad_request",
                                                "invalid_name", "not_an_image", "no_face", "several_faces",
                                                "person_not_found", "photo_not_found", "person_exists",
                                                "confirmation_needed", "body_too_large", "forget_incomplete",
                                                "disk_full", "busy", "not_found", "method_not_allowed", "failed",
                                                "internal"]},
            "message": {"type": "string", "description": "one sentence, never a traceback"},
            "concerns": {"type": "array", "items": {"type": "string"}},
            "report": _ref("ForgetReport")}}}}
    appearance = {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "source": {"type": "string", "description": "`live` (the app's Live page) or the API key's name"},
        "first_seen": {"type": "number", "description": "Unix time"}, "last_seen": {"type": "number"},
        "duration_s": {"type": "number"}, "has_face": {"type": "boolean"}}}
    photo = {"type": "object", "properties": {
        "file": {"type": "string"}, "image_id": {"type": "string", "format": "uuid"}, "sha256": {"type": "string"},
        "box": {"type": "array", "items": {"type": "integer"}, "description": "[x, y, w, h] of the enrolled face"}}}
    return {"Box": box, "Face": face, "EnrolOutcome": outcome, "ForgetReport": report, "Error": error,
            "Appearance": appearance, "Photo": photo}


def _paths() -> dict:
    p = PREFIX
    obj = {"type": "object"}
    return {
        f"{p}/identify": {"post": {
            "operationId": "identify", "summary": "Name every face of a photo with the app's verdicts",
            "description": "Faces named enter the who-was-here history with the key's name as their source.",
            "parameters": [_param("top", "query", {"type": "integer", "minimum": 1, "maximum": 50, "default": 3},
                                  "candidates per face"),
                           _param("limit", "query", {"type": "integer", "minimum": 0, "default": 0},
                                  "at most this many faces, largest first (0: all)")],
            "requestBody": _PHOTO_BODY,
            "responses": {"200": _json({"type": "object", "required": ["threshold", "faces"], "properties": {
                "threshold": {"type": "number"}, "faces": {"type": "array", "items": _ref("Face")}}},
                "every face, largest first (an empty list: no face)"), **_errors(400, 413)}}},
        f"{p}/people": {"get": {
            "operationId": "listPeople", "summary": "Everyone enrolled, with photo counts",
            "responses": {"200": _json({"type": "object", "properties": {
                "people": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "photos": {"type": "integer"}}}},
                "unfinished": {"type": "array", "items": {"type": "string"},
                               "description": "half-forgotten people: DELETE them again to finish"}}},
                "people"), **_errors()}}},
        f"{p}/people/{{name}}": {
            "parameters": [_NAME],
            "get": {"operationId": "getPerson", "summary": "A person's enrolled photos",
                    "responses": {"200": _json({"type": "object", "properties": {
                        "name": {"type": "string"}, "photos": {"type": "array", "items": _ref("Photo")}}}, "photos"),
                        **_errors(404)}},
            "delete": {"operationId": "forgetPerson", "summary": "Forget a person everywhere (manage)",
                       "description": "Photos, vectors, tag cache, clusters, history, face pictures. A forget that "
                                      "could not remove everything answers 500 forget_incomplete with the report "
                                      "of what is left; sending it again finishes.",
                       "responses": {"200": _json(_ref("ForgetReport"), "what was removed"), **_errors(404, 500, 507)}}},
        f"{p}/people/{{name}}/photos": {"post": {
            "operationId": "enrol", "summary": "Enrol photos of a person after the enrolment checks (manage)",
            "description": "A photo with concerns (looks like someone else, unlike the person's own photos, "
                           "enrolled for someone else, a poor face, a name like an enrolled one) comes back "
                           "needs_confirmation and is saved only with confirm=true.",
            "parameters": [_NAME, _param("confirm", "query", {"type": "boolean", "default": False},
                                         "save despite the concerns (the CLI's --yes)"),
                           _param("largest", "query", {"type": "boolean", "default": False},
                                  "with several faces in a photo, enrol the largest")],
            "requestBody": _PHOTO_BODY,
            "responses": {"200": _json({"type": "object", "properties": {
                "person": {"type": "string"}, "photos": {"type": "array", "items": _ref("EnrolOutcome")},
                **{k: {"type": "integer"} for k in ("saved", "already_enrolled", "duplicate", "needs_confirmation",
                                                    "refused")}}}, "each photo's outcome"),
                **_errors(400, 413, 507)}}},
        f"{p}/people/{{name}}/rename": {"post": {
            "operationId": "renamePerson", "summary": "Rename; into an enrolled name only with merge (manage)",
            "parameters": [_NAME],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["to"], "properties": {
                    "to": {"type": "string"}, "merge": {"type": "boolean", "default": False}}}}}},
            "responses": {"200": _json({"type": "object", "properties": {
                "name": {"type": "string"}, "merged": {"type": "boolean"}}}, "renamed"), **_errors(400, 404, 409)}}},
        f"{p}/people/{{name}}/photos/{{file}}": {"delete": {
            "operationId": "removePhoto", "summary": "Remove one enrolled photo (manage)",
            "parameters": [_NAME, _FILE],
            "responses": {"200": _json(obj, "removed"), **_errors(404)}}},
        f"{p}/people/{{name}}/photos/{{file}}/move": {"post": {
            "operationId": "movePhoto", "summary": "Move a photo enrolled for the wrong person (manage)",
            "parameters": [_NAME, _FILE],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["to"], "properties": {
                    "to": {"type": "string"}, "confirm": {"type": "boolean", "default": False}}}}}},
            "responses": {"200": _json(obj, "moved"), **_errors(400, 404, 409)}}},
        f"{p}/history": {"get": {
            "operationId": "history", "summary": "Who was here: appearances, newest first (manage)",
            "parameters": [_param("day", "query", {"type": "string", "format": "date"}, "only this day (local time)"),
                           _param("name", "query", {"type": "array", "items": {"type": "string"}}, "only these people"),
                           _param("source", "query", {"type": "array", "items": {"type": "string"}},
                                  "only these sources (`live`, key names)"),
                           _param("limit", "query", {"type": "integer", "minimum": 1, "default": 1000}, "at most")],
            "responses": {"200": _json({"type": "object", "properties": {
                "appearances": {"type": "array", "items": _ref("Appearance")}}}, "appearances"), **_errors(400)}}},
    }


@lru_cache(maxsize=1)
def _document() -> dict:
    from facerec import __version__

    return {
        "openapi": "3.1.0",
        "info": {"title": "facerec", "version": __version__,
                 "description": "facerec's native HTTP API (`facerec serve`). Keys: `facerec admin api-key create "
                                "--name NAME --scope recognize|manage`; send them as `x-api-key` (not needed while "
                                "no key exists: then the server listens on localhost only). recognize: identify, "
                                "list people; manage: everything. Errors: `{\"error\": {\"code\", \"message\"}}`."},
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": {"Error": _json(_ref("Error"), "an error (see error.code)")},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI document (built once)."""
    return _document()


def html_page() -> str:
    """A small self-contained HTML page: every route with its summary and description."""
    doc = document()
    rows = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}<br><small>{html.escape(op.get('description', ''))}"
                        "</small></td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>facerec API</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td{padding:.3em;vertical-align:top}"
            "</style></head><body><h1>facerec API</h1>"
            f"<p>{html.escape(doc['info']['description'])}</p><p>Machine-readable: <a href='/openapi.json'>"
            "/openapi.json</a> (OpenAPI 3.1).</p><table>" + "".join(rows) + "</table></body></html>")
