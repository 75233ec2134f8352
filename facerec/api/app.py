"""The HTTP server of ``facerec serve``: a Starlette app run by uvicorn.

One :class:`facerec.api.service.FaceService` (one set of models) per process serves every
request. Recognition runs in worker threads, at most ``workers`` at once; up to
``max_pending`` requests wait for one, and a request beyond that is answered 503 at
once (the server keeps going). Each request has a time limit (``timeout_s``: the client
gets 503 and the work is abandoned), a body cap (``max_body`` bytes all together,
``max_photo`` bytes per photo: the app's 20 MB) and the decoder's pixel budget
(:mod:`facerec.images`). Errors come back in the dialect's shape, never as a traceback.

Keys (:mod:`facerec.api.keys`): while none exists the server only listens on a local
address and needs none; once one exists every request needs a valid one, and a
``recognize`` key cannot enrol, rename or delete.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Callable

from starlette.applications import Starlette
from starlette.responses import Response

from facerec.api import compreface, deepstack, native
from facerec.api.http import MB, Api, BodyCap, BodyTooLargeError, Limits
from facerec.api.keys import KeyStore
from facerec.api.service import FaceService
from facerec.errors import ConfigError

if TYPE_CHECKING:
    from starlette.routing import Route

log = logging.getLogger("facerec.api")


# -- the application --------------------------------------------------------------------


def create_app(service: FaceService, keys: KeyStore, limits: Limits = Limits()) -> Callable:
    """The ASGI application: CompreFace routes under ``/api/v1/``, DeepStack routes under
    ``/v1/vision/face``, facerec's own under ``/api/facerec/v1`` (OpenAPI at ``/openapi.json``),
    wrapped in the body cap."""
    api = Api(service, keys, limits)
    routes: list[Route] = [*native.routes(api), *compreface.routes(api), *deepstack.routes(api)]
    app = Starlette(routes=routes, exception_handlers={404: native.no_route, 405: native.no_route})
    app.state.api = api

    def too_large(path: str) -> Response:
        dialect = (deepstack if path.startswith(deepstack.PREFIX)
                   else native if path.startswith(native.PREFIX) else compreface)
        return dialect.error_response(BodyTooLargeError(f"request body over {limits.max_body / MB:g} MB"))

    return BodyCap(app, limits.max_body, too_large)


def is_local(host: str) -> bool:
    """Whether ``host`` is a loopback address or name (nothing else can connect)."""
    from facerec.auth import is_local_address

    return host == "localhost" or is_local_address(host)


def serve(settings: Any, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(),
          ready: Callable[[str], None] | None = None) -> None:
    """Run the API on ``host:port`` until interrupted, over the gallery of ``settings``.

    Raises:
        ConfigError: ``host`` is not local while no API key exists.
    """
    import uvicorn

    from facerec.pipeline import FaceRecognizer

    keys = KeyStore(settings.gallery)
    if not is_local(host) and not keys.any():
        raise ConfigError(f"refusing to listen on {host} without an API key: create one first "
                          "(facerec admin api-key create --name NAME --scope recognize|manage), or listen on 127.0.0.1")
    rec = FaceRecognizer(settings)
    rec.detector, rec.embedder  # load the models once, before the first request
    service = FaceService(rec)
    app = create_app(service, keys, limits)
    if ready is not None:
        ready(f"facerec API on http://{host}:{port} (gallery {settings.gallery}; "
              + ("API keys required" if keys.any() else "no API key needed: local only") + ")")
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        # uvicorn stops on SIGTERM, then raises it again: exit normally instead, so that the
        # sightings still queued for the history are written (atexit) and the lines below run
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    finally:
        service.close()
        stats = service.batcher.stats if service.batcher is not None else None
        if ready is not None and stats is not None and stats.passes:
            ready(f"embedding batches: {stats.passes} passes, {stats.crops} faces, largest {stats.largest} faces, "
                  f"{stats.requests_batched} requests shared a pass with another")
