"""facerec's own HTTP API (``/api/facerec/v1``), described by OpenAPI (``/openapi.json``).

For new clients: no compatibility dialect, facerec's own answers. Identify gives the app's
verdicts (:mod:`facerec.verdict`: ``match``, ``possible match``, ``unknown``) with raw scores
and the threshold; enrol makes the enrolment checks and returns their concerns (saved only
with ``confirm=true``, like ``--yes`` on the CLI); people can be listed, renamed (merging
with ``merge``), have a photo removed or moved, and be forgotten (the
:class:`facerec.people.ForgetReport` comes back; a half-finished forget answers 500 with
what is left); the who-was-here history can be read.

Keys and scopes as for the other dialects (``x-api-key`` header): ``recognize`` identifies
and lists people; ``manage`` also enrols, changes people and reads the history. Errors are
``{"error": {"code": "<snake_case>", "message": "<one sentence>"}}`` (plus ``concerns`` or
``report`` where said) with the HTTP status of :data:`ERRORS`.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Awaitable, Callable

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from facerec.api import openapi
from facerec.api.http import (Api, AuthError, BodyTooLargeError, BusyError, header_key_endpoint, json_response,
                              read_form, read_json, upload_bytes)
from facerec.api.service import BadRequestError, ImageNotFoundError, Recognition, image_id
from facerec.errors import (ConfirmationNeededError, DiskFullError, FaceRecError, ForgetIncompleteError,
                            GalleryBusyError, ImageError, InvalidNameError, ManyFacesError, NoFaceError,
                            PersonExistsError, PersonNotFoundError)
from facerec.verdict import verdict

PREFIX = openapi.PREFIX

# (error class, code, HTTP status); the first matching class wins
ERRORS: tuple[tuple[type, str, int], ...] = (
    (NoFaceError, "no_face", 422),
    (ManyFacesError, "several_faces", 422),
    (ImageNotFoundError, "photo_not_found", 404),
    (PersonNotFoundError, "person_not_found", 404),
    (PersonExistsError, "person_exists", 409),
    (ConfirmationNeededError, "confirmation_needed", 409),
    (InvalidNameError, "invalid_name", 400),
    (ImageError, "not_an_image", 400),
    (BadRequestError, "bad_request", 400),
    (BodyTooLargeError, "body_too_large", 413),
    (ForgetIncompleteError, "forget_incomplete", 500),
    (DiskFullError, "disk_full", 507),
    (GalleryBusyError, "busy", 503),
    (BusyError, "busy", 503),
)
_AUTH = {"missing": ("missing_key", 401), "invalid": ("invalid_key", 401), "scope": ("forbidden", 403)}


def error_response(exc: BaseException) -> Response:
    """``{"error": {"code", "message", ...}}`` with the HTTP status for ``exc``."""
    if isinstance(exc, AuthError):
        code, status = _AUTH[exc.reason]
        return json_response({"error": {"code": code, "message": str(exc)}}, status)
    for cls, code, status in ERRORS:
        if isinstance(exc, cls):
            body: dict[str, Any] = {"code": code, "message": str(exc)}
            if isinstance(exc, ConfirmationNeededError):
                body["concerns"] = list(exc.concerns)
            if isinstance(exc, ForgetIncompleteError) and exc.report is not None:
                body["report"] = forget_report(exc.report)
            return json_response({"error": body}, status)
    if isinstance(exc, FaceRecError):
        return json_response({"error": {"code": "failed", "message": str(exc)}}, 500 if exc.exit_code >= 5 else 400)
    return json_response({"error": {"code": "internal", "message": "internal server error (see the server's log)"}},
                         500)


async def no_route(request: Request, exc: Exception) -> Response:
    """A path or method no route serves: in the native shape under the native prefix,
    Starlette's plain answer elsewhere (the dialects' clients never call such paths)."""
    status = getattr(exc, "status_code", 404)
    if not request.url.path.startswith(PREFIX):
        return PlainTextResponse("Not Found" if status == 404 else "Method Not Allowed", status)
    code, what = ("not_found", "no such route") if status == 404 else ("method_not_allowed", "method not allowed")
    return json_response({"error": {"code": code, "message": f"{what}: {request.method} {request.url.path} "
                                                             f"(see {PREFIX}/docs)"}}, status)


# -- shapes ---------------------------------------------------------------------------------


def identified(r: Recognition, threshold: float) -> dict:
    """One face of ``POST /identify``: box, verdict, candidates."""
    x, y, w, h = r.face.box
    v = verdict(r.match, threshold)
    return {"box": {"x": round(float(x), 1), "y": round(float(y), 1), "width": round(float(w), 1),
                    "height": round(float(h), 1)},
            "detection_score": round(float(r.face.score), 5),
            "verdict": v.kind, "name": v.name if v.known else None, "score": round(v.score, 5),
            "label": v.label,
            "candidates": [{"name": c.name, "score": round(c.score, 5)} for c in r.candidates]}


def photo_entry(record: Any) -> dict:
    """One enrolled photo: file name (as the People page and ``people photos`` name it), id, box."""
    return {"file": record.path.name, "image_id": image_id(record), "sha256": record.sha,
            "box": list(record.box) if record.box is not None else None}


def forget_report(report: Any) -> dict:
    """A :class:`facerec.people.ForgetReport` as JSON; ``complete`` when nothing is left."""
    return {"name": report.name, "photos": report.photos, "vectors": report.vectors,
            "tag_photos": report.tag_photos, "tag_matches": report.tag_matches,
            "cluster_groups": list(report.cluster_groups), "sightings": report.sightings,
            "problems": list(report.problems), "complete": not report.problems}


def _flag(request: Request, name: str) -> bool:
    value = (request.query_params.get(name) or "").strip().lower()
    if value in ("", "false", "0", "no"):
        return False
    if value in ("true", "1", "yes"):
        return True
    raise BadRequestError(f"{name} must be true or false, got {value!r}")


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = (request.query_params.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequestError(f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise BadRequestError(f"{name} must be in [{low}, {high}], got {value}")
    return value


async def _photos(request: Request, api: Api) -> list[tuple[bytes, str]]:
    """Every photo of the request: multipart ``file`` fields (one or more), or JSON
    ``{"file": base64}`` / ``{"files": [base64, ...]}``."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await read_json(request)
        values = body.get("files") if isinstance(body.get("files"), list) else [body.get("file")]
        return [(await upload_bytes(v, f"file {i + 1}", api), f"photo{i + 1}") for i, v in enumerate(values)]
    form = await read_form(request, api)
    files = [v for k, v in form.multi_items() if k == "file"]
    if not files:
        raise BadRequestError("file: missing (send the photo as a multipart field `file`)", kind="part")
    out = []
    for i, v in enumerate(files):
        name = v.filename if isinstance(v, UploadFile) and v.filename else f"photo{i + 1}"
        out.append((await upload_bytes(v, "file", api), name))
    return out


async def _json_object(request: Request) -> dict:
    body = await request.body()
    return await read_json(request) if body else {}


def _name(body: dict, field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise BadRequestError(f"{field}: missing (send {{\"{field}\": NAME}})", kind="param")
    return value


# -- routes -----------------------------------------------------------------------------------

RouteSpec = tuple[str, Callable[[Request], Awaitable[Response]], list[str], bool]


def routes(api: Api) -> list[Route]:
    """Every native route, plus the OpenAPI document (``/openapi.json`` and under the
    prefix) and a small HTML page listing the routes (``/api/facerec/v1/docs``), both
    readable without a key."""

    def endpoint(body: Callable, write: bool = False) -> Callable:
        return header_key_endpoint(api, body, error_response, write)

    async def document(request: Request) -> Response:
        return json_response(openapi.document())

    async def docs(request: Request) -> Response:
        return HTMLResponse(openapi.html_page())

    out = [Route("/openapi.json", document, methods=["GET"]), Route(f"{PREFIX}/openapi.json", document, methods=["GET"]),
           Route(f"{PREFIX}/docs", docs, methods=["GET"])]
    for path, body, methods, write in [*_recognition_routes(api), *_people_routes(api)]:
        out.append(Route(path, endpoint(body, write), methods=methods))
    return out


def _recognition_routes(api: Api) -> list[RouteSpec]:
    """Identify (verdicts) and the history."""
    svc = api.service

    async def identify(request: Request) -> Response:
        top, limit = _int(request, "top", 3, 1, 50), _int(request, "limit", 0, 0, 1000)
        (data, name), *rest = await _photos(request, api)
        if rest:
            raise BadRequestError("identify takes one photo per request")
        found = await api.run(svc.recognize, data, name, limit, None, top, api.source())
        t = svc.threshold
        return json_response({"threshold": round(t, 5), "faces": [identified(r, t) for r in found]})

    async def history(request: Request) -> Response:
        from facerec import history as log

        text = (request.query_params.get("day") or "").strip()
        try:
            day = date.fromisoformat(text) if text else None
        except ValueError:
            raise BadRequestError(f"day must be YYYY-MM-DD, got {text!r}") from None
        names = request.query_params.getlist("name") or None
        sources = request.query_params.getlist("source") or None
        limit = _int(request, "limit", 1000, 1, 100_000)

        def work() -> list[Any]:
            if not log.history_path(svc.rec.gallery.root).is_file():
                return []
            return log.History(svc.rec.gallery.root).appearances(day, names, sources)[:limit]

        rows = await api.run(work)
        return json_response({"appearances": [
            {"id": a.id, "name": a.name, "source": a.source, "first_seen": a.first_seen, "last_seen": a.last_seen,
             "duration_s": round(a.duration, 3), "has_face": a.snapshot is not None} for a in rows]})

    return [(f"{PREFIX}/identify", identify, ["POST"], False),
            (f"{PREFIX}/history", history, ["GET"], True)]


def _people_routes(api: Api) -> list[RouteSpec]:
    """People: list, one person's photos, enrol, rename/merge, remove or move a photo, forget."""
    svc = api.service

    async def list_people(request: Request) -> Response:
        people, unfinished = await api.run(lambda: (svc.people.list(), svc.people.unfinished()))
        return json_response({"people": [{"name": p.name, "photos": p.photos} for p in people],
                              "unfinished": unfinished})

    async def person(request: Request) -> Response:
        name = request.path_params["name"]
        records = await api.run(svc.photos, name)
        return json_response({"name": name, "photos": [photo_entry(r) for r in records]})

    async def enrol(request: Request) -> Response:
        confirm, largest = _flag(request, "confirm"), _flag(request, "largest")
        photos = await _photos(request, api)
        done = await api.run(svc.enroll_checked, request.path_params["name"], photos, confirm, largest)
        items = [{"file": o.source, "status": o.status, "concerns": list(o.concerns), "reason": o.reason,
                  **({"image_id": image_id(o.record), "stored_as": o.record.path.name} if o.record else {})}
                 for o in done.photos]
        counts = {s: sum(o.status == s for o in done.photos)
                  for s in ("saved", "already_enrolled", "duplicate", "needs_confirmation", "refused")}
        return json_response({"person": done.person, "photos": items, **counts})

    async def rename(request: Request) -> Response:
        body = await _json_object(request)
        merge = body.get("merge", False)
        if not isinstance(merge, bool):
            raise BadRequestError("merge must be true or false")
        name, merged = await api.run(svc.rename_person, request.path_params["name"], _name(body, "to"), merge)
        return json_response({"name": name, "merged": merged})

    async def remove_photo(request: Request) -> Response:
        name, file = request.path_params["name"], request.path_params["file"]
        await api.run(_remove_photo, svc, name, file)
        return json_response({"name": name, "removed": file})

    async def move_photo(request: Request) -> Response:
        body = await _json_object(request)
        name, file = request.path_params["name"], request.path_params["file"]
        confirm = body.get("confirm", False) is True
        await api.run(_move_photo, svc, name, file, _name(body, "to"), confirm)
        return json_response({"name": name, "moved": file, "to": body["to"]})

    async def forget(request: Request) -> Response:
        report = await api.run(svc.forget, request.path_params["name"])
        return json_response(forget_report(report))

    person_path = f"{PREFIX}/people/{{name}}"
    return [(f"{PREFIX}/people", list_people, ["GET"], False),
            (person_path, person, ["GET"], False),
            (person_path, forget, ["DELETE"], True),
            (f"{person_path}/photos", enrol, ["POST"], True),
            (f"{person_path}/rename", rename, ["POST"], True),
            (f"{person_path}/photos/{{file}}", remove_photo, ["DELETE"], True),
            (f"{person_path}/photos/{{file}}/move", move_photo, ["POST"], True)]


def _own_photo(svc: Any, name: str, file: str) -> None:
    """Raise unless ``name`` is enrolled and has the photo ``file``."""
    if not any(r.path.name == file for r in svc.photos(name)):
        raise ImageNotFoundError(f"{name} has no enrolled photo {file!r}")


def _remove_photo(svc: Any, name: str, file: str) -> None:
    _own_photo(svc, name, file)
    svc.people.remove_photo(name, file)


def _move_photo(svc: Any, name: str, file: str, to: str, confirm: bool) -> None:
    _own_photo(svc, name, file)
    svc.people.move_photo(name, file, to, confirm=confirm)

