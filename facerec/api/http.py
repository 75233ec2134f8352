"""What both dialects' routes share: limits, the request's errors, the key check, reading
bodies and photos, answering JSON (see :mod:`facerec.api.app` for the server)."""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import anyio
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from facerec.api.batcher import BatcherBusyError
from facerec.api.keys import ApiKey, KeyStore
from facerec.api.service import BadRequestError, FaceService
from facerec.errors import FaceRecError, ImageError

if TYPE_CHECKING:
    pass

log = logging.getLogger("facerec.api")

MB = 1_000_000

OPEN_SOURCE = "api"
"""The history's source for sightings made while no API key exists (open, local-only mode)."""

_CURRENT_KEY: contextvars.ContextVar[ApiKey | None] = contextvars.ContextVar("facerec_api_key", default=None)


@dataclass(frozen=True)
class Limits:
    """What one server accepts.

    Attributes:
        max_photo: bytes of one photo (the app's 20 MB).
        max_body: bytes of one request body, all parts together.
        workers: recognitions running at once (threads).
        max_pending: requests admitted at once (running or waiting); more get 503.
        timeout_s: seconds one request may take before the client gets 503.
    """

    max_photo: int = 20 * MB
    max_body: int = 45 * MB
    workers: int = 4
    max_pending: int = 64
    timeout_s: float = 30.0


# -- errors the server itself raises ------------------------------------------------------


class AuthError(FaceRecError):
    """The request's key is missing (``reason="missing"``), wrong or revoked (``"invalid"``),
    or may not change people (``"scope"``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BodyTooLargeError(FaceRecError):
    """The request body is over the server's cap."""


class BusyError(FaceRecError):
    """Every worker is busy and the queue is full, or the request ran past its time limit."""


# -- the shared request machinery ------------------------------------------------------


class Api:
    """What every route shares: the service, the keys, the limits and the worker pool."""

    def __init__(self, service: FaceService, keys: KeyStore, limits: Limits = Limits()) -> None:
        self.service = service
        self.keys = keys
        self.limits = limits
        self._limiter: anyio.CapacityLimiter | None = None
        self.pending = 0

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # made inside the event loop
            self._limiter = anyio.CapacityLimiter(self.limits.workers)
        return self._limiter

    def authorize(self, key: str | None, write: bool) -> ApiKey | None:
        """The key's record (``None`` in open mode, when no key exists).

        Raises:
            AuthError: missing, wrong or revoked key; a ``recognize`` key changing people.
        """
        _CURRENT_KEY.set(None)
        if not self.keys.any():
            return None
        if not key:
            raise AuthError("missing", "missing API key")
        found = self.keys.check(key)
        if found is None:
            raise AuthError("invalid", "API key is not valid (wrong or revoked)")
        if write and not found.can_manage:
            raise AuthError("scope", f"API key {found.name!r} may only recognise (scope recognize); "
                                     "enrolling, renaming and deleting need a manage key")
        _CURRENT_KEY.set(found)
        return found

    def source(self) -> str:
        """Who the current request is, for the who-was-here history: the name of the key it
        was authorised with (``"doorbell"``), or ``"api"`` while no key exists."""
        key = _CURRENT_KEY.get()
        return key.name if key is not None else OPEN_SOURCE

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker thread, within the concurrency and time limits.

        Raises:
            BusyError: the server is full, or ``fn`` ran past the time limit (it finishes
            in the background; its result is dropped).
        """
        if self.pending >= self.limits.max_pending:
            raise BusyError("server busy: too many requests at once; try again in a moment")
        self.pending += 1
        try:
            with anyio.fail_after(self.limits.timeout_s):
                return await anyio.to_thread.run_sync(lambda: fn(*args), limiter=self.limiter,
                                                      abandon_on_cancel=True)
        except TimeoutError:
            raise BusyError(f"request took over {self.limits.timeout_s:g} s; try again later") from None
        except BatcherBusyError as exc:
            raise BusyError(str(exc)) from None
        finally:
            self.pending -= 1


def drop_none(value: Any) -> Any:
    """``value`` with every ``None`` field of its dicts left out (recursively)."""
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [drop_none(v) for v in value]
    return value


def json_response(body: Any, status: int = 200) -> JSONResponse:
    """A JSON response with null fields left out."""
    return JSONResponse(drop_none(body), status_code=status)


async def read_form(request: Request, api: Api) -> FormData:
    """The request's form (multipart or urlencoded), within the body cap.

    Raises:
        BadRequestError: not a form; BodyTooLargeError.
    """
    try:
        return await request.form(max_files=20, max_fields=100)
    except BodyTooLargeError:
        raise
    except Exception as exc:  # malformed multipart: the client's mistake, said in one line
        raise BadRequestError(f"malformed form data ({type(exc).__name__}: {exc})") from None


async def read_json(request: Request) -> dict:
    """The request's JSON object.

    Raises:
        BadRequestError: not a JSON object; BodyTooLargeError.
    """
    body = await request.body()
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise BadRequestError("malformed JSON body") from None
    if not isinstance(data, dict):
        raise BadRequestError("the JSON body must be an object")
    return data


async def upload_bytes(value: Any, field: str, api: Api) -> bytes:
    """The bytes of one uploaded photo (a form file, or base64 text), at most ``max_photo``.

    Raises:
        BadRequestError: not a file or base64; ImageError: empty or too large.
    """
    if isinstance(value, UploadFile):
        data = await value.read(api.limits.max_photo + 1)
    elif isinstance(value, str) and value:
        text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
        if len(text) > math.ceil(api.limits.max_photo * 4 / 3) + 4:
            raise ImageError(f"{field}: file too large (over {api.limits.max_photo / MB:g} MB)")
        try:
            data = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            raise BadRequestError(f"{field}: not a file upload nor valid base64") from None
    else:
        raise BadRequestError(f"{field}: missing (send the photo as a multipart file or base64 JSON)", kind="part")
    if len(data) > api.limits.max_photo:
        raise ImageError(f"{field}: file too large (over {api.limits.max_photo / MB:g} MB)")
    if not data:
        raise ImageError(f"{field}: empty file")
    return data


# -- body cap (ASGI middleware) ------------------------------------------------------------


class BodyCap:
    """ASGI middleware: a request whose Content-Length is over ``max_body`` is answered at
    once by ``too_large(path)``; a chunked body that grows past it raises
    :class:`BodyTooLargeError` in the route reading it."""

    def __init__(self, app: Callable, max_body: int, too_large: Callable[[str], Response]) -> None:
        self.app, self.max_body, self.too_large = app, max_body, too_large

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > self.max_body:
            await self.too_large(scope.get("path", ""))(scope, receive, send)
            return
        seen = 0

        async def capped() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLargeError(f"request body over {self.max_body / MB:g} MB")
            return message

        await self.app(scope, capped, send)


async def guarded(handler: Callable[[], Awaitable[Response]], error_response: Callable[[BaseException], Response],
                  ) -> Response:
    """Run a route body; any error becomes ``error_response(exc)`` (an unexpected one is
    logged here with its traceback and reported to the client in one line)."""
    try:
        return await handler()
    except FaceRecError as exc:
        return error_response(exc)
    except Exception as exc:  # never a traceback to the client
        log.exception("unexpected error")
        return error_response(exc)


def header_key_endpoint(api: Api, body: Callable[[Request], Awaitable[Response]],
                        error_response: Callable[[BaseException], Response], write: bool = False) -> Callable:
    """A route handler that checks the ``x-api-key`` header (``write``: a manage key) before
    ``body``, every error answered by ``error_response`` (the CompreFace and native dialects)."""
    async def handle(request: Request) -> Response:
        async def run() -> Response:
            api.authorize(request.headers.get("x-api-key"), write)
            return await body(request)
        return await guarded(run, error_response)
    return handle
