"""CompreFace-compatible routes (the recognition, detection and verification services).

Routes (``x-api-key`` header), as in CompreFace's REST API description:

- ``POST /api/v1/recognition/recognize`` (``limit``, ``det_prob_threshold``,
  ``prediction_count``, ``face_plugins``, ``status``)
- ``POST|GET|DELETE /api/v1/recognition/faces`` (add with ``?subject=``; list with
  ``page``/``size``/``subject``; delete by ``subject``, or every face without it)
- ``DELETE /api/v1/recognition/faces/{image_id}``, ``POST /api/v1/recognition/faces/delete``
  (bulk, a JSON list of ids), ``GET /api/v1/recognition/faces/{image_id}/img``,
  ``POST /api/v1/recognition/faces/{image_id}/verify``
- ``POST|GET|DELETE /api/v1/recognition/subjects``, ``PUT|DELETE /api/v1/recognition/subjects/{subject}``
- ``POST /api/v1/detection/detect``, ``POST /api/v1/verification/verify``

Photos come as multipart ``file`` (``source_image``/``target_image`` for verification) or as
JSON with the same names in base64. Boxes are ``{"probability", "x_min", "y_min", "x_max",
"y_max"}`` in whole pixels of the photo as displayed. Similarities are client scores
(:mod:`facerec.api.scores`). Face plugins: ``landmarks`` (five points) and ``calculator``
(the identity vector, as ``embedding``); other names (age, gender, mask, pose, the literal
``undefined``) are ignored. Errors are ``{"message", "code"}`` with CompreFace's codes.
"""

from __future__ import annotations

import math
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from facerec.api.http import (Api, AuthError, BodyTooLargeError, BusyError, header_key_endpoint, json_response,
                              read_form, read_json, upload_bytes)
from facerec.api.scores import client_score
from facerec.api.service import BadRequestError, ImageNotFoundError, image_id
from facerec.errors import (ConfirmationNeededError, FaceRecError, GalleryBusyError, ImageError, InvalidNameError,
                            ManyFacesError, NoFaceError, PersonExistsError, PersonNotFoundError)
from facerec.types import Face

PREFIX = "/api/v1"
PLUGINS = ("landmarks", "calculator")

# (CompreFace code, HTTP status) per facerec error; the first matching class wins
_CODES: tuple[tuple[type, int, int], ...] = (
    (NoFaceError, 28, 400),
    (ManyFacesError, 31, 400),
    (ImageNotFoundError, 11, 404),
    (PersonNotFoundError, 42, 404),
    (PersonExistsError, 43, 400),
    (InvalidNameError, 26, 400),
    (ConfirmationNeededError, 26, 400),
    (ImageError, 21, 400),
    (BodyTooLargeError, 26, 413),
    (GalleryBusyError, 27, 503),
    (BusyError, 41, 503),
)
_AUTH = {"missing": (20, 401), "invalid": (10, 401), "scope": (32, 403)}
_BAD = {"part": 34, "param": 33, "value": 26}


def error_response(exc: BaseException) -> Response:
    """``{"message", "code"}`` with CompreFace's code and HTTP status for ``exc``."""
    if isinstance(exc, AuthError):
        code, status = _AUTH[exc.reason]
        message = "Missing header: x-api-key" if exc.reason == "missing" else str(exc)
        return json_response({"message": message, "code": code}, status)
    if isinstance(exc, BadRequestError):
        return json_response({"message": str(exc), "code": _BAD.get(exc.kind, 26)}, 400)
    for cls, code, status in _CODES:
        if isinstance(exc, cls):
            message = "No face is found in the given image" if cls is NoFaceError else str(exc)
            return json_response({"message": message, "code": code}, status)
    if isinstance(exc, FaceRecError):
        return json_response({"message": str(exc), "code": 41}, 500 if exc.exit_code >= 5 else 400)
    return json_response({"message": "internal server error (see the server's log)", "code": 0}, 500)


# -- parameters ------------------------------------------------------------------------


def _param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return None if value is None or value.strip() in ("", "undefined", "null") else value.strip()


def _int(request: Request, name: str, default: int, low: int) -> int:
    text = _param(request, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequestError(f"{name} must be a whole number, got {text!r}") from None
    if value < low:
        raise BadRequestError(f"{name} must be at least {low}, got {value}")
    return value


def _prob(request: Request) -> float | None:
    text = _param(request, "det_prob_threshold")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequestError(f"det_prob_threshold must be a number in [0, 1], got {text!r}") from None
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise BadRequestError(f"det_prob_threshold must be in [0, 1], got {value}")
    return value


def _plugins(request: Request) -> set[str]:
    text = _param(request, "face_plugins") or ""
    return {p.strip() for p in text.split(",")} & set(PLUGINS)


def _status(request: Request) -> bool:
    return (_param(request, "status") or "").lower() == "true"


async def _photo(request: Request, api: Api, field: str = "file") -> tuple[bytes, str]:
    """The photo in ``field``: multipart or base64 JSON; returns ``(bytes, name)``."""
    if request.headers.get("content-type", "").startswith("application/json"):
        value = (await read_json(request)).get(field)
        return await upload_bytes(value, field, api), field
    form = await read_form(request, api)
    value = form.get(field)
    name = getattr(value, "filename", None) or field
    return await upload_bytes(value, field, api), name


async def _photos(request: Request, api: Api, *fields: str) -> list[bytes]:
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await read_json(request)
        return [await upload_bytes(body.get(f), f, api) for f in fields]
    form = await read_form(request, api)
    return [await upload_bytes(form.get(f), f, api) for f in fields]


# -- shapes ------------------------------------------------------------------------------


def box(face: Face) -> dict:
    """CompreFace's box: detector probability and whole-pixel corners."""
    x, y, w, h = face.box
    return {"probability": round(float(face.score), 5), "x_min": max(0, int(round(x))), "y_min": max(0, int(round(y))),
            "x_max": int(round(x + w)), "y_max": int(round(y + h))}


def face_fields(face: Face, plugins: set[str]) -> dict:
    """The box plus the plugin fields asked for (landmarks, embedding)."""
    out: dict[str, Any] = {"box": box(face)}
    if "landmarks" in plugins and face.landmarks is not None:
        out["landmarks"] = [[int(round(float(px))), int(round(float(py)))] for px, py in face.landmarks]
    if "calculator" in plugins and face.vector is not None:
        out["embedding"] = [round(float(v), 6) for v in face.vector]
    return out


def _versions(api: Api, status: bool) -> dict | None:
    if not status:
        return None
    s = api.service.rec.settings
    return {"detector": f"facerec.{s.detector}", "calculator": f"facerec.{s.backbone}"}


# -- routes ------------------------------------------------------------------------------

# one route: (path, body(request) -> Response, HTTP methods, changes people)
RouteSpec = tuple[str, Callable[[Request], Awaitable[Response]], list[str], bool]
REC, SUBJECTS = f"{PREFIX}/recognition", f"{PREFIX}/recognition/subjects"


def routes(api: Api) -> list[Route]:
    """Every CompreFace route, each with and without a trailing slash."""

    def endpoint(body: Callable, write: bool = False) -> Callable:
        return header_key_endpoint(api, body, error_response, write)

    out = []
    for path, body, methods, write in [*_recognition_routes(api), *_face_routes(api), *_subject_routes(api)]:
        handler = endpoint(body, write)
        out += [Route(path, handler, methods=methods), Route(path + "/", handler, methods=methods)]
    return out


def _recognition_routes(api: Api) -> list[RouteSpec]:
    """Recognise, detect, and the verification service (photos in, faces out)."""
    svc = api.service

    async def recognize(request: Request) -> Response:
        limit, prob, top = _int(request, "limit", 0, 0), _prob(request), _int(request, "prediction_count", 1, 1)
        plugins, status = _plugins(request), _status(request)
        data, name = await _photo(request, api)
        found = await api.run(svc.recognize, data, name, limit, prob, top, api.source())
        if not found:
            raise NoFaceError("no face")
        t = svc.threshold
        result = [{**face_fields(r.face, plugins),
                   "subjects": [{"subject": c.name, "similarity": client_score(c.score, t)} for c in r.candidates]}
                  for r in found]
        return json_response({"result": result, "plugins_versions": _versions(api, status)})

    async def detect(request: Request) -> Response:
        limit, prob, plugins, status = _int(request, "limit", 0, 0), _prob(request), _plugins(request), _status(request)
        data, name = await _photo(request, api)

        def work() -> list[Face]:
            faces = svc.detect(data, name, limit, prob)
            return svc.embed(faces) if "calculator" in plugins else faces

        faces = await api.run(work)
        if not faces:
            raise NoFaceError("no face")
        return json_response({"result": [face_fields(f, plugins) for f in faces],
                              "plugins_versions": _versions(api, status)})

    async def verification(request: Request) -> Response:
        limit, prob, plugins, status = _int(request, "limit", 0, 0), _prob(request), _plugins(request), _status(request)
        source, target = await _photos(request, api, "source_image", "target_image")
        src, matches = await api.run(svc.verify_photos, source, target, limit, prob)
        t = svc.threshold
        return json_response({"result": [{"source_image_face": face_fields(src, plugins),
                                          "face_matches": [{**face_fields(f, plugins), "similarity": client_score(s, t)}
                                                           for f, s in matches],
                                          "plugins_versions": _versions(api, status)}]})

    return [(f"{REC}/recognize", recognize, ["POST"], False),
            (f"{PREFIX}/detection/detect", detect, ["POST"], False),
            (f"{PREFIX}/verification/verify", verification, ["POST"], False)]


def _face_routes(api: Api) -> list[RouteSpec]:
    """The face collection: add, list, delete (by subject, id, in bulk), the image, verify by id."""
    svc = api.service

    async def add_face(request: Request) -> Response:
        subject = _param(request, "subject")
        if subject is None:
            raise BadRequestError("subject: missing (add a face with ?subject=NAME)", kind="param")
        data, name = await _photo(request, api)
        record, _dup = await api.run(svc.enroll, subject, data, name)
        return json_response({"image_id": image_id(record), "subject": record.person})

    async def list_faces(request: Request) -> Response:
        page, size = _int(request, "page", 0, 0), _int(request, "size", 20, 1)
        records = await api.run(svc.photos, _param(request, "subject"))
        chunk = records[page * size:(page + 1) * size]
        return json_response({"faces": [{"image_id": image_id(r), "subject": r.person} for r in chunk],
                              "page_number": page, "page_size": size,
                              "total_pages": math.ceil(len(records) / size), "total_elements": len(records)})

    async def delete_faces(request: Request) -> Response:
        n = await api.run(svc.delete_photos, _param(request, "subject"))
        return json_response({"deleted": n})

    async def delete_face(request: Request) -> Response:
        record = await api.run(svc.delete_image, request.path_params["image_id"])
        return json_response({"image_id": image_id(record), "subject": record.person})

    async def delete_many(request: Request) -> Response:
        ids = await _json_list(request)
        done = await api.run(svc.delete_images, ids)  # CompreFace's bulk delete skips unknown ids
        return json_response({"deleted": [{"image_id": i, "subject": r.person} for i, r in done]})

    async def face_image(request: Request) -> Response:
        record = await api.run(svc.find_image, request.path_params["image_id"])
        data = await api.run(record.path.read_bytes)
        return Response(data, media_type="image/jpeg" if record.path.suffix.lower() in (".jpg", ".jpeg")
                        else "application/octet-stream")

    async def verify_face(request: Request) -> Response:
        limit, prob, plugins, status = _int(request, "limit", 0, 0), _prob(request), _plugins(request), _status(request)
        data, name = await _photo(request, api)
        found = await api.run(svc.verify, request.path_params["image_id"], data, name, limit, prob)
        if not found:
            raise NoFaceError("no face")
        t = svc.threshold
        return json_response({"result": [{**face_fields(f, plugins), "similarity": client_score(s, t)}
                                         for f, s in found], "plugins_versions": _versions(api, status)})

    return [(f"{REC}/faces", add_face, ["POST"], True),
            (f"{REC}/faces", list_faces, ["GET"], False),
            (f"{REC}/faces", delete_faces, ["DELETE"], True),
            (f"{REC}/faces/delete", delete_many, ["POST"], True),
            (f"{REC}/faces/{{image_id}}", delete_face, ["DELETE"], True),
            (f"{REC}/faces/{{image_id}}/img", face_image, ["GET"], False),
            (f"{REC}/faces/{{image_id}}/verify", verify_face, ["POST"], False)]


def _subject_routes(api: Api) -> list[RouteSpec]:
    """Subjects: add, list, rename (merging into an existing name), delete one or all."""
    svc = api.service

    async def add_subject(request: Request) -> Response:
        subject = (await read_json(request)).get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise BadRequestError("subject: missing (send {\"subject\": NAME})", kind="param")
        return json_response({"subject": await api.run(svc.add_subject, subject)})

    async def list_subjects(request: Request) -> Response:
        return json_response({"subjects": await api.run(svc.subjects)})

    async def rename_subject(request: Request) -> Response:
        new = (await read_json(request)).get("subject")
        if not isinstance(new, str) or not new.strip():
            raise BadRequestError("subject: missing (send {\"subject\": NEW_NAME})", kind="param")
        await api.run(svc.rename_subject, request.path_params["subject"], new)
        return json_response({"updated": True})

    async def delete_subject(request: Request) -> Response:
        return json_response({"subject": await api.run(svc.delete_subject, request.path_params["subject"])})

    async def delete_subjects(request: Request) -> Response:
        return json_response({"deleted": await api.run(svc.delete_all_subjects)})

    return [(SUBJECTS, add_subject, ["POST"], True),
            (SUBJECTS, list_subjects, ["GET"], False),
            (SUBJECTS, delete_subjects, ["DELETE"], True),
            (f"{SUBJECTS}/{{subject}}", rename_subject, ["PUT"], True),
            (f"{SUBJECTS}/{{subject}}", delete_subject, ["DELETE"], True)]


async def _json_list(request: Request) -> list[str]:
    import json

    try:
        data = json.loads(await request.body() or b"[]")
    except ValueError:
        raise BadRequestError("malformed JSON body (send a list of image ids)") from None
    if not isinstance(data, list) or not all(isinstance(i, str) for i in data):
        raise BadRequestError("send a JSON list of image ids")
    return data
