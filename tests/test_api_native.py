"""facerec's native HTTP API (/api/facerec/v1, OpenAPI at /openapi.json), the micro-batcher in
front of the embedder, API recognitions in the who-was-here history, and `facerec admin
api-key` (issue 21, items 4, 5, 6 and 8)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import requests
from conftest import extra_module, png_bytes, synthetic_photo
from test_api import BLACK, photo, serving

from facerec import cli, history
from facerec.api.app import Limits, create_app
from facerec.api.batcher import BatcherBusyError, EmbedBatcher
from facerec.api.keys import KeyStore
from facerec.api.openapi import PREFIX, document

P = PREFIX
GROUP = png_bytes(synthetic_photo([1, 2, 7]))  # Ann, Bob and a stranger


def _error(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"], body
    assert "Traceback" not in r.text
    return body["error"]


# -- the OpenAPI document -------------------------------------------------------------------


def test_openapi_document_is_valid_and_matches_the_routes(recognizer):
    validator = extra_module("openapi_spec_validator", "pip install openapi-spec-validator (the test extra)")
    doc = document()
    validator.validate(doc)
    from starlette.routing import Route

    from facerec.api.service import FaceService

    app = create_app(FaceService(recognizer, history=False, batch=False), KeyStore(recognizer.gallery.root)).app
    served = {(r.path, m.lower()) for r in app.routes if isinstance(r, Route) and r.path.startswith(P)
              for m in r.methods if m != "HEAD"}
    described = {(path, m) for path, item in doc["paths"].items() for m in item if m != "parameters"}
    assert described == {s for s in served if not s[0].endswith(("/openapi.json", "/docs"))}
    with serving(recognizer) as (url, _, keys, _):
        keys.create("door", "recognize")  # the document and the page need no key
        assert requests.get(f"{url}/openapi.json").json() == requests.get(f"{url}{P}/openapi.json").json() == doc
        page = requests.get(f"{url}{P}/docs")
        assert page.headers["content-type"].startswith("text/html")
        assert all(path.replace("{", "{") in page.text for path in doc["paths"])


# -- every route ---------------------------------------------------------------------------------


def test_enrol_checks_identify_verdicts_people_and_forget(recognizer):
    with serving(recognizer) as (url, _, _, _):
        r = requests.post(f"{url}{P}/people/Ann/photos",
                          files=[("file", ("a0.png", photo(1, 0))), ("file", ("a1.png", photo(1, 1))),
                                 ("file", ("again.png", photo(1, 0)))])
        body = r.json()
        assert r.status_code == 200 and body["person"] == "Ann" and body["saved"] == 2 and body["duplicate"] == 1
        assert [p["status"] for p in body["photos"]] == ["saved", "saved", "duplicate"]
        # a face unlike Ann's: concerns come back and nothing is saved without confirm=true
        r = requests.post(f"{url}{P}/people/Ann/photos", files={"file": ("b.png", photo(2))})
        (item,) = r.json()["photos"]
        assert item["status"] == "needs_confirmation" and "not look like Ann" in item["concerns"][0]
        assert r.json()["saved"] == 0 and requests.get(f"{url}{P}/people").json()["people"] == [
            {"name": "Ann", "photos": 2}]
        r = requests.post(f"{url}{P}/people/Bob/photos", files={"file": ("b.png", photo(2))})
        assert r.json()["saved"] == 1
        two = png_bytes(synthetic_photo([2, 7]))
        r = requests.post(f"{url}{P}/people/Bob/photos", files={"file": ("two.png", two)})
        assert r.json()["photos"][0]["status"] == "refused" and "2 faces" in r.json()["photos"][0]["reason"]
        r = requests.post(f"{url}{P}/people/Bob/photos?largest=true", files={"file": ("none.png", BLACK)})
        assert r.json()["photos"][0] == {"file": "none.png", "status": "refused", "concerns": [],
                                         "reason": "no face found"}
        # a name like an enrolled one is a concern too; confirm=true adds to that person
        r = requests.post(f"{url}{P}/people/ann/photos", files={"file": ("a5.png", photo(1, 5))})
        assert any("ann looks like Ann" in c for c in r.json()["photos"][0]["concerns"])
        r = requests.post(f"{url}{P}/people/ann/photos?confirm=true", files={"file": ("a5.png", photo(1, 5))})
        assert r.json()["person"] == "Ann" and r.json()["saved"] == 1

        # identify: the app's verdicts, raw scores, the threshold
        r = requests.post(f"{url}{P}/identify?top=2", files={"file": ("g.png", GROUP)})
        faces = r.json()["faces"]
        assert [(f["verdict"], f.get("name"), f["label"]) for f in faces] == [
            ("match", "Ann", "Ann"), ("match", "Bob", "Bob"), ("unknown", None, "unknown")]
        t = r.json()["threshold"]
        assert faces[0]["score"] >= t > faces[2]["score"] and len(faces[0]["candidates"]) == 2
        assert faces[0]["box"] == {"x": 30.0, "y": 20.0, "width": 48.0, "height": 48.0}
        assert requests.post(f"{url}{P}/identify", files={"file": ("b.png", BLACK)}).json()["faces"] == []

        # people: one person's photos, rename (merge only when asked), move and remove a photo
        ann = requests.get(f"{url}{P}/people/Ann").json()["photos"]
        assert len(ann) == 3 and all(len(p["sha256"]) == 64 for p in ann)
        _error(requests.post(f"{url}{P}/people/Bob/rename", json={"to": "Ann"}), 409, "person_exists")
        r = requests.post(f"{url}{P}/people/Bob/rename", json={"to": "Robert"})
        assert r.json() == {"name": "Robert", "merged": False}
        r = requests.post(f"{url}{P}/people/Ann/photos/{ann[0]['file']}/move", json={"to": "Robert"})
        assert r.status_code == 200 and len(requests.get(f"{url}{P}/people/Robert").json()["photos"]) == 2
        r = requests.delete(f"{url}{P}/people/Ann/photos/{ann[1]['file']}")
        assert r.json() == {"name": "Ann", "removed": ann[1]["file"]}
        _error(requests.delete(f"{url}{P}/people/Ann/photos/{ann[1]['file']}"), 404, "photo_not_found")
        r = requests.post(f"{url}{P}/people/Robert/rename", json={"to": "Ann", "merge": True})
        assert r.json() == {"name": "Ann", "merged": True}
        assert requests.get(f"{url}{P}/people").json() == {"people": [{"name": "Ann", "photos": 3}], "unfinished": []}

        # forget: the report
        report = requests.delete(f"{url}{P}/people/Ann").json()
        assert report["name"] == "Ann" and report["photos"] == 3 and report["complete"] and report["problems"] == []
        _error(requests.delete(f"{url}{P}/people/Ann"), 404, "person_not_found")
        assert requests.get(f"{url}{P}/people").json()["people"] == []


def test_a_half_finished_forget_answers_with_what_is_left(recognizer, monkeypatch):
    from facerec.people import People

    with serving(recognizer) as (url, _, _, service):
        requests.post(f"{url}{P}/people/Ann/photos", files={"file": ("a.png", photo(1))})

        def stuck(self, plan, report):
            raise OSError("history file is locked")

        monkeypatch.setattr(People, "_forget_history", stuck)
        err = _error(requests.delete(f"{url}{P}/people/Ann"), 500, "forget_incomplete")
        assert err["report"]["photos"] == 1 and err["report"]["complete"] is False
        assert "history file is locked" in err["report"]["problems"][0]
        assert requests.get(f"{url}{P}/people").json() == {"people": [], "unfinished": ["Ann"]}
        monkeypatch.undo()
        report = requests.delete(f"{url}{P}/people/Ann").json()  # forgetting again finishes
        assert report["complete"] and requests.get(f"{url}{P}/people").json()["unfinished"] == []


def test_native_errors_keys_and_scopes(recognizer):
    with serving(recognizer, Limits(max_photo=200_000, max_body=300_000)) as (url, _, keys, _):
        _error(requests.post(f"{url}{P}/identify", files={"other": ("a.png", photo(1))}), 400, "bad_request")
        _error(requests.post(f"{url}{P}/identify", files={"file": ("x.jpg", b"junk")}), 400, "not_an_image")
        _error(requests.post(f"{url}{P}/identify?top=0", files={"file": ("a.png", photo(1))}), 400, "bad_request")
        _error(requests.post(f"{url}{P}/people/.hidden/photos", files={"file": ("a.png", photo(1))}), 400,
               "invalid_name")
        _error(requests.post(f"{url}{P}/people/a%2Fb/photos", files={"file": ("a.png", photo(1))}), 404, "not_found")
        _error(requests.put(f"{url}{P}/people"), 405, "method_not_allowed")
        _error(requests.post(f"{url}{P}/identify", files={"file": ("big.png", b"\x00" * 400_000)}), 413,
               "body_too_large")
        _error(requests.get(f"{url}{P}/people/Nobody"), 404, "person_not_found")
        _error(requests.post(f"{url}{P}/people/Nobody/rename", json={"to": "X"}), 404, "person_not_found")
        _error(requests.post(f"{url}{P}/people/Nobody/rename", json={}), 400, "bad_request")
        _error(requests.get(f"{url}{P}/history?day=yesterday"), 400, "bad_request")
        manage, door = keys.create("admin", "manage"), keys.create("doorbell", "recognize")
        _error(requests.get(f"{url}{P}/people"), 401, "missing_key")
        _error(requests.get(f"{url}{P}/people", headers={"x-api-key": "frk_wrong"}), 401, "invalid_key")
        _error(requests.post(f"{url}{P}/people/Ann/photos", headers={"x-api-key": door},
                             files={"file": ("a.png", photo(1))}), 403, "forbidden")
        _error(requests.get(f"{url}{P}/history", headers={"x-api-key": door}), 403, "forbidden")
        assert requests.get(f"{url}{P}/people", headers={"x-api-key": door}).json()["people"] == []
        r = requests.post(f"{url}{P}/people/Ann/photos", headers={"x-api-key": manage},
                          files={"file": ("a.png", photo(1))})
        assert r.json()["saved"] == 1
        keys.revoke("doorbell")
        _error(requests.get(f"{url}{P}/people", headers={"x-api-key": door}), 401, "invalid_key")


# -- who was here: the key's name as the source -------------------------------------------------


def test_api_recognitions_enter_the_history_with_the_keys_name(recognizer):
    with serving(recognizer, history=True) as (url, _, keys, _):
        manage, door = keys.create("admin", "manage"), keys.create("doorbell", "recognize")
        for name, p in (("Ann", 1), ("Bob", 2)):
            requests.post(f"{url}{P}/people/{name}/photos", headers={"x-api-key": manage},
                          files={"file": (f"{name}.png", photo(p))})
        requests.post(f"{url}{P}/identify", headers={"x-api-key": door}, files={"file": ("g.png", GROUP)})
        requests.post(f"{url}/api/v1/recognition/recognize", headers={"x-api-key": manage},
                      files={"file": ("a.png", photo(1, 3))})
        requests.post(f"{url}/v1/vision/face/recognize", data={"api_key": door}, files={"image": ("b.png", photo(2, 3))})
        assert history.writer(recognizer.gallery.root).flush()
        rows = requests.get(f"{url}{P}/history", headers={"x-api-key": manage}).json()["appearances"]
        assert sorted((a["name"], a["source"]) for a in rows) == [("Ann", "admin"), ("Ann", "doorbell"),
                                                                   ("Bob", "doorbell")]
        assert all(a["has_face"] for a in rows)  # the stranger is not recorded
        only = requests.get(f"{url}{P}/history", params={"source": "admin"}, headers={"x-api-key": manage})
        assert [(a["name"], a["source"]) for a in only.json()["appearances"]] == [("Ann", "admin")]
        csv = history.to_csv(history.History(recognizer.gallery.root).appearances()).splitlines()
        assert csv[0].endswith(",source") and sum(line.endswith(",doorbell") for line in csv) == 2


# -- the micro-batcher ---------------------------------------------------------------------------


def test_concurrent_requests_are_embedded_in_one_batch():
    gate = threading.Event()
    calls: list[int] = []

    def embed(crops: np.ndarray) -> np.ndarray:
        calls.append(len(crops))
        if len(calls) == 1:
            gate.wait(5)  # the first pass is slow: the others queue up meanwhile
        return crops.reshape(len(crops), -1)[:, :2].astype(np.float32)

    batcher = EmbedBatcher(embed, max_batch=32)
    results: dict[int, np.ndarray] = {}

    def request(i: int, n: int) -> None:
        crops = np.full((n, 2, 2, 3), i, dtype=np.uint8)
        results[i] = batcher.embed(crops, timeout=10)

    threads = [threading.Thread(target=request, args=(0, 1))]
    threads[0].start()
    while not calls:
        time.sleep(0.005)
    threads += [threading.Thread(target=request, args=(i, 1 + i % 3)) for i in range(1, 6)]
    for t in threads[1:]:
        t.start()
    while batcher._queue.qsize() < 5:
        time.sleep(0.005)
    gate.set()
    for t in threads:
        t.join(10)
    assert calls == [1, 2 + 3 + 1 + 2 + 3]  # everything that waited went through in one pass
    for i, v in results.items():  # each request got its own vectors back
        assert v.shape == (1 + i % 3 if i else 1, 2) and np.all(v == i)
    assert batcher.stats.passes == 2 and batcher.stats.largest == 11 and batcher.stats.requests_batched == 5
    batcher.close()


def test_a_full_queue_is_refused_and_an_error_reaches_every_request():
    gate = threading.Event()

    def embed(crops: np.ndarray) -> np.ndarray:
        gate.wait(5)
        if crops[0, 0, 0, 0] == 9:
            raise ValueError("bad batch")
        return np.zeros((len(crops), 2), np.float32)

    batcher = EmbedBatcher(embed, max_queue=1)
    one = np.zeros((1, 2, 2, 3), np.uint8)
    first = threading.Thread(target=batcher.embed, args=(one,))
    first.start()
    time.sleep(0.1)  # the first is being embedded; the queue holds one more
    second = threading.Thread(target=batcher.embed, args=(one,))
    second.start()
    time.sleep(0.1)
    with pytest.raises(BatcherBusyError):
        batcher.embed(one)
    gate.set()
    first.join(5), second.join(5)
    with pytest.raises(ValueError, match="bad batch"):
        batcher.embed(np.full((1, 2, 2, 3), 9, np.uint8))
    assert batcher.embed(one).shape == (1, 2)  # the thread kept going
    batcher.close()


def test_the_server_answers_503_when_the_embedding_queue_is_full(recognizer):
    gate = threading.Event()
    with serving(recognizer, Limits(workers=4)) as (url, _, _, service):
        real = recognizer.path.embed_crops
        service.batcher = EmbedBatcher(lambda crops: (gate.wait(10), real(crops))[1], max_queue=1)
        answers: list[int] = []

        def post() -> None:
            answers.append(requests.post(f"{url}{P}/identify", files={"file": ("a.png", photo(1))}).status_code)

        threads = [threading.Thread(target=post) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(answers) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        for t in threads:
            t.join(10)
        assert sorted(answers) == [200, 200, 503, 503]  # one embedding, one queued, the rest refused at once
        r = requests.post(f"{url}{P}/identify", files={"file": ("a.png", photo(1))})
        assert r.status_code == 200  # and the server keeps going
        service.batcher.close()


# -- facerec admin api-key --------------------------------------------------------------------------


def test_admin_api_key_create_list_revoke(tmp_path, capsys):
    g = str(tmp_path / "g")
    assert cli.main(["admin", "api-key", "create", "--name", "doorbell", "--scope", "recognize", "--gallery", g]) == 0
    out = capsys.readouterr().out.splitlines()
    key = out[-1]
    assert key.startswith("frk_") and KeyStore(g).check(key).name == "doorbell"
    assert cli.main(["admin", "api-key", "create", "--name", "ha", "--scope", "manage", "--gallery", g]) == 0
    capsys.readouterr()
    assert cli.main(["admin", "api-key", "list", "--gallery", g]) == 0
    assert capsys.readouterr().out.splitlines() == ["doorbell,recognize", "ha,manage"]
    assert cli.main(["admin", "api-key", "create", "--name", "ha", "--scope", "manage", "--gallery", g]) == 2
    assert cli.main(["admin", "api-key", "revoke", "doorbell", "--gallery", g]) == 0
    assert KeyStore(g).check(key) is None
    assert cli.main(["admin", "api-key", "revoke", "doorbell", "--gallery", g]) == 4
    assert "no API key called 'doorbell'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["admin", "api-key", "create", "--name", "x", "--scope", "everything", "--gallery", g])
    with pytest.raises(SystemExit):
        cli.main(["api-key", "list", "--gallery", g])  # the old spelling is gone: one place for keys
    assert cli.main(["admin", "clear-password", "--gallery", g]) == 0  # the other admin actions still work
