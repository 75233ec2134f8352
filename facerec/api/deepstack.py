"""DeepStack-compatible face routes (``/v1/vision/face``), ``api_key`` as a form field.

- ``POST /v1/vision/face`` (and ``/face/``): detect; ``image``; optional ``min_confidence``
  on the detector's score.
- ``POST /v1/vision/face/register``: ``userid`` and one or more image fields (``image``,
  ``image1``, ...; with several faces the largest is taken). facerec *adds* the photos to
  the person's enrolled ones (DeepStack replaced them) and says so in ``message``.
- ``POST /v1/vision/face/recognize``: ``image``, ``min_confidence``: a face whose client
  score is below it, or below facerec's threshold, has ``userid`` ``"unknown"``.
- ``POST /v1/vision/face/list``, ``/delete`` (``userid``), ``/match`` (``image1``, ``image2``).

Answers are ``{"success": true, ...}`` or ``{"success": false, "error": ...}`` with HTTP
400 (bad request), 401 (missing or wrong key), 403 (a recognize key changing people),
404 (unknown user), 413 (body too large), 500, 503 (busy). Boxes are whole pixels of the
photo as displayed; confidences are client scores (:mod:`facerec.api.scores`).
"""

from __future__ import annotations

import math
from typing import Callable

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from facerec.api.http import (Api, AuthError, BodyTooLargeError, BusyError, guarded, json_response, read_form,
                             upload_bytes)
from facerec.api.scores import client_score
from facerec.api.service import BadRequestError, ImageNotFoundError
from facerec.errors import (FaceRecError, GalleryBusyError, ImageError, InvalidNameError, ManyFacesError, NoFaceError,
                            PersonNotFoundError)
from facerec.types import Face

PREFIX = "/v1/vision/face"

_STATUS: tuple[tuple[type, int], ...] = (
    (PersonNotFoundError, 404), (ImageNotFoundError, 404), (BodyTooLargeError, 413),
    (BusyError, 503), (GalleryBusyError, 503),
    (NoFaceError, 400), (ManyFacesError, 400), (ImageError, 400), (InvalidNameError, 400), (BadRequestError, 400),
)
_AUTH = {"missing": 401, "invalid": 401, "scope": 403}


def error_response(exc: BaseException) -> Response:
    """``{"success": false, "error": ...}`` with DeepStack's HTTP status for ``exc``."""
    if isinstance(exc, AuthError):
        message = "Incorrect api key" if exc.reason != "scope" else str(exc)
        return json_response({"success": False, "error": message}, _AUTH[exc.reason])
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return json_response({"success": False, "error": str(exc)}, status)
    if isinstance(exc, FaceRecError):
        return json_response({"success": False, "error": str(exc)}, 500 if exc.exit_code >= 5 else 400)
    return json_response({"success": False, "error": "internal server error (see the server's log)"}, 500)


def _confidence(form: FormData) -> float | None:
    text = form.get("min_confidence")
    if not isinstance(text, str) or text.strip() in ("", "undefined"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequestError(f"min_confidence must be a number in [0, 1], got {text!r}") from None
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise BadRequestError(f"min_confidence must be in [0, 1], got {value}")
    return value


def _userid(form: FormData) -> str:
    value = form.get("userid")
    if not isinstance(value, str) or not value.strip():
        raise BadRequestError("user id not specified", kind="param")
    return value.strip()


def corners(face: Face) -> dict:
    """DeepStack's box: whole-pixel corners."""
    x, y, w, h = face.box
    return {"x_min": max(0, int(round(x))), "y_min": max(0, int(round(y))),
            "x_max": int(round(x + w)), "y_max": int(round(y + h))}


def routes(api: Api) -> list[Route]:
    """Every DeepStack face route."""
    svc = api.service

    def endpoint(body: Callable, write: bool = False) -> Callable:
        async def handle(request: Request) -> Response:
            async def run() -> Response:
                form = await read_form(request, api)
                key = form.get("api_key")
                api.authorize(key if isinstance(key, str) else None, write)
                return await body(form)
            return await guarded(run, error_response)
        return handle

    async def image(form: FormData, field: str = "image") -> tuple[bytes, str]:
        value = form.get(field)
        if value is None:
            raise BadRequestError("No valid image file found", kind="part")
        return await upload_bytes(value, field, api), getattr(value, "filename", None) or field

    async def detect(form: FormData) -> Response:
        data, name = await image(form)
        faces = await api.run(svc.detect, data, name, 0, _confidence(form))
        return json_response({"success": True, "predictions": [{"confidence": round(float(f.score), 5), **corners(f)}
                                                               for f in faces]})

    async def register(form: FormData) -> Response:
        userid = _userid(form)
        files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise BadRequestError("No valid image file found", kind="part")
        photos = [(await upload_bytes(v, k, api), v.filename or k) for k, v in files]

        def work() -> tuple[int, int]:
            added = dup = 0
            for data, name in photos:
                _record, duplicate = svc.enroll(userid, data, name, largest=True)
                dup += duplicate
                added += not duplicate
            return added, dup

        added, dup = await api.run(work)
        note = f"; {dup} already enrolled" if dup else ""
        return json_response({"success": True,
                              "message": f"face added: {added} photo(s) added to {userid}'s enrolled photos{note} "
                                         "(facerec adds photos; it does not replace the person's earlier ones)"})

    async def recognize(form: FormData) -> Response:
        data, name = await image(form)
        floor = _confidence(form)
        found = await api.run(svc.recognize, data, name, 0, None, 1, api.source())
        t = svc.threshold
        out = []
        for r in found:
            c = client_score(r.match.score, t)
            known = r.match.known and (floor is None or c >= floor)
            out.append({"confidence": c, "userid": r.match.name if known else "unknown", **corners(r.face)})
        return json_response({"success": True, "predictions": out})

    async def list_faces(form: FormData) -> Response:
        return json_response({"success": True, "faces": await api.run(svc.subjects)})

    async def delete(form: FormData) -> Response:
        await api.run(svc.delete_subject, _userid(form))
        return json_response({"success": True})

    async def match(form: FormData) -> Response:
        (a, _), (b, _) = await image(form, "image1"), await image(form, "image2")
        similarity = await api.run(svc.compare, a, b)
        return json_response({"success": True, "similarity": client_score(similarity, svc.threshold)})

    table = [(PREFIX, detect, False), (PREFIX + "/", detect, False), (f"{PREFIX}/register", register, True),
             (f"{PREFIX}/recognize", recognize, False), (f"{PREFIX}/list", list_faces, False),
             (f"{PREFIX}/delete", delete, True), (f"{PREFIX}/match", match, False)]
    return [Route(path, endpoint(body, write), methods=["POST"]) for path, body, write in table]
