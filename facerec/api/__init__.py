"""facerec's HTTP API (``facerec serve``): CompreFace- and DeepStack-compatible routes, and
facerec's own (native) API described by OpenAPI.

- :mod:`facerec.api.app`: the Starlette application, its limits (body size, concurrency,
  time per request) and :func:`serve`, which runs it under uvicorn.
- :mod:`facerec.api.service`: what both dialects call: recognition through
  :class:`facerec.pipeline.FaceRecognizer`, every change to people through
  :class:`facerec.people.People`; stable image ids.
- :mod:`facerec.api.compreface`, :mod:`facerec.api.deepstack`: the two dialects' routes,
  request parsing and response/error shapes.
- :mod:`facerec.api.native`, :mod:`facerec.api.openapi`: the native API (``/api/facerec/v1``:
  verdicts, enrolment checks, people, forget, history) and its OpenAPI document.
- :mod:`facerec.api.batcher`: faces of concurrent requests embedded in one batch.
- :mod:`facerec.api.keys`: API keys (hashed, scoped ``recognize`` or ``manage``).
- :mod:`facerec.api.scores`: facerec's match scores mapped onto the scales the clients cut on.
"""

from __future__ import annotations
