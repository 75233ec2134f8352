"""`facerec serve`: the CompreFace and DeepStack dialects over real HTTP (uvicorn in a thread).

Synthetic tests use the blob detector and the tiny embedder (fast); the real-client tests
enrol LFW people with compreface-sdk 0.6.0 and deepstack-python 0.9 on the real models.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests

from facerec.api.app import Limits, create_app
from facerec.api.keys import KeyStore
from facerec.api.scores import client_score
from facerec.api.service import FaceService

from conftest import LFW, needs_shared, png_bytes, synthetic_photo

uvicorn = pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(rec, limits: Limits = Limits(), history: bool = False):
    """The API over ``rec`` on a free local port; yields ``(base_url, port, keys, service)``."""
    service = FaceService(rec, history=history)
    keys = KeyStore(rec.gallery.root)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service, keys, limits), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", port, keys, service
    finally:
        server.should_exit = True
        thread.join(10)


def photo(person: int, seed: int = 0) -> bytes:
    return png_bytes(synthetic_photo([person], seed=seed))


BLACK = png_bytes(np.zeros((60, 80, 3), dtype=np.uint8))


def no_nulls(value) -> bool:
    if isinstance(value, dict):
        return all(v is not None and no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(no_nulls(v) for v in value)
    return True


# -- scores ------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.37, 0.8, 0.94])
def test_client_scores_cut_where_facerec_does_and_keep_order(t):
    raw = np.linspace(0, 1, 401)
    mapped = [client_score(s, t) for s in raw]
    assert all(b >= a for a, b in zip(mapped, mapped[1:]))
    strangers = [c for s, c in zip(raw, mapped) if s < t]
    known = [c for s, c in zip(raw, mapped) if s >= t]
    assert max(strangers) < 0.40 < 0.45 and min(known) >= 0.60
    assert client_score(1.0, t) == 1.0


# -- CompreFace ---------------------------------------------------------------------------


def test_compreface_subjects_faces_recognize_verify(recognizer):
    with serving(recognizer) as (url, _, _, _):
        r = requests.post(f"{url}/api/v1/recognition/subjects", json={"subject": "Ann"})
        assert r.status_code == 200 and r.json() == {"subject": "Ann"}
        ids = []
        for seed in range(3):
            r = requests.post(f"{url}/api/v1/recognition/faces", params={"subject": "Ann"},
                              files={"file": (f"ann{seed}.png", photo(1, seed))})
            assert r.status_code == 200, r.text
            assert r.json()["subject"] == "Ann"
            ids.append(str(uuid.UUID(r.json()["image_id"])))
        # base64 JSON, as CompreFace accepts
        r = requests.post(f"{url}/api/v1/recognition/faces?subject=Bob",
                          json={"file": base64.b64encode(photo(2)).decode()})
        assert r.status_code == 200, r.text
        bob_id = r.json()["image_id"]
        assert requests.get(f"{url}/api/v1/recognition/subjects/").json() == {"subjects": ["Ann", "Bob"]}

        # paging
        page = requests.get(f"{url}/api/v1/recognition/faces", params={"page": 1, "size": 3}).json()
        assert page["total_elements"] == 4 and page["total_pages"] == 2 and page["page_number"] == 1
        assert page["faces"] == [{"image_id": bob_id, "subject": "Bob"}]
        first = requests.get(f"{url}/api/v1/recognition/faces?size=3").json()["faces"]
        assert sorted(f["image_id"] for f in first) == sorted(ids)

        # recognize: the enrolled person clears Double Take's 0.60, a stranger stays under 0.40
        r = requests.post(f"{url}/api/v1/recognition/recognize?prediction_count=2&face_plugins=landmarks,age,undefined"
                          "&status=true", files={"file": ("x.png", photo(1, seed=9))})
        assert r.status_code == 200, r.text
        body = r.json()
        assert no_nulls(body) and "plugins_versions" in body
        (face,) = body["result"]
        assert [s["subject"] for s in face["subjects"]] == ["Ann", "Bob"]
        assert face["subjects"][0]["similarity"] >= 0.60 > face["subjects"][1]["similarity"]
        assert "landmarks" not in face and "age" not in face  # blob faces have no landmarks; age is not a plugin here
        assert set(face["box"]) == {"probability", "x_min", "y_min", "x_max", "y_max"}
        assert face["box"]["x_min"] == 30 and face["box"]["x_max"] == 78
        r = requests.post(f"{url}/api/v1/recognition/recognize", files={"file": ("s.png", photo(7))})
        assert r.json()["result"][0]["subjects"][0]["similarity"] < 0.40
        assert "plugins_versions" not in r.json()

        # verify against an enrolled face by id
        r = requests.post(f"{url}/api/v1/recognition/faces/{ids[0]}/verify", files={"file": ("v.png", photo(1, 5))})
        assert r.status_code == 200 and r.json()["result"][0]["similarity"] >= 0.60
        r = requests.post(f"{url}/api/v1/recognition/faces/{ids[0]}/verify", files={"file": ("v.png", photo(2))})
        assert r.json()["result"][0]["similarity"] < 0.40
        assert requests.get(f"{url}/api/v1/recognition/faces/{ids[0]}/img").content.startswith(b"\x89PNG")

        # detection and verification services
        r = requests.post(f"{url}/api/v1/detection/detect?face_plugins=calculator",
                          files={"file": ("two.png", png_bytes(synthetic_photo([1, 2])))})
        assert len(r.json()["result"]) == 2 and len(r.json()["result"][0]["embedding"]) == 64
        r = requests.post(f"{url}/api/v1/verification/verify",
                          files={"source_image": ("a.png", photo(1)), "target_image": ("b.png", photo(1, 3))})
        assert r.json()["result"][0]["face_matches"][0]["similarity"] >= 0.60

        # rename into an existing name merges (CompreFace's rule)
        r = requests.put(f"{url}/api/v1/recognition/subjects/Bob", json={"subject": "Ann"})
        assert r.status_code == 200 and r.json() == {"updated": True}
        assert requests.get(f"{url}/api/v1/recognition/subjects").json() == {"subjects": ["Ann"]}
        assert requests.get(f"{url}/api/v1/recognition/faces").json()["total_elements"] == 4

        # delete by id, in bulk, by subject, then every subject
        ids = [f["image_id"] for f in requests.get(f"{url}/api/v1/recognition/faces").json()["faces"]]
        r = requests.delete(f"{url}/api/v1/recognition/faces/{ids[0]}")
        assert r.json() == {"image_id": ids[0], "subject": "Ann"}
        r = requests.delete(f"{url}/api/v1/recognition/faces/{ids[0]}")
        assert r.status_code == 404 and r.json()["code"] == 11
        r = requests.post(f"{url}/api/v1/recognition/faces/delete", json=[ids[1], str(uuid.uuid4())])
        assert r.json() == {"deleted": [{"image_id": ids[1], "subject": "Ann"}]}
        assert requests.delete(f"{url}/api/v1/recognition/faces?subject=Ann").json() == {"deleted": 2}
        assert requests.get(f"{url}/api/v1/recognition/faces").json()["total_elements"] == 0
        requests.post(f"{url}/api/v1/recognition/subjects", json={"subject": "Cy"})
        assert requests.delete(f"{url}/api/v1/recognition/subjects").json()["deleted"] >= 1
        assert requests.get(f"{url}/api/v1/recognition/subjects").json() == {"subjects": []}


def test_compreface_errors_have_its_shape_and_codes(recognizer):
    with serving(recognizer) as (url, _, _, _):
        faces = f"{url}/api/v1/recognition/faces"
        cases = [
            (requests.post(f"{url}/api/v1/recognition/recognize", files={"file": ("b.png", BLACK)}), 400, 28),
            (requests.post(faces, params={"subject": "Ann"}, files={"file": ("b.png", BLACK)}), 400, 28),
            (requests.post(faces, params={"subject": "Ann"}, files={"file": ("x.png", b"not an image")}), 400, 21),
            (requests.post(faces, params={"subject": "Ann"}, files={"file": ("two.png", png_bytes(synthetic_photo([1, 2])))}),
             400, 31),
            (requests.post(faces, files={"file": ("a.png", photo(1))}), 400, 33),
            (requests.post(faces, params={"subject": "Ann"}, files={"other": ("a.png", photo(1))}), 400, 34),
            (requests.post(faces, params={"subject": "../x"}, files={"file": ("a.png", photo(1))}), 400, 26),
            (requests.post(f"{url}/api/v1/recognition/recognize?limit=-1", files={"file": ("a.png", photo(1))}), 400, 26),
            (requests.delete(f"{url}/api/v1/recognition/subjects/Nobody"), 404, 42),
            (requests.get(f"{faces}?subject=Nobody"), 404, 42),
            (requests.post(f"{faces}/{uuid.uuid4()}/verify", files={"file": ("a.png", photo(1))}), 404, 11),
        ]
        for r, status, code in cases:
            assert (r.status_code, r.json().get("code")) == (status, code), r.text
            assert set(r.json()) == {"message", "code"} and "Traceback" not in r.text
        assert requests.get(f"{url}/api/v1/recognition/subjects").json() == {"subjects": []}  # nothing was saved


def test_keys_scopes_and_revocation_in_both_dialects(recognizer):
    with serving(recognizer) as (url, _, keys, _):
        manage = keys.create("admin", "manage")
        door = keys.create("doorbell", "recognize")
        r = requests.get(f"{url}/api/v1/recognition/subjects")
        assert (r.status_code, r.json()["code"]) == (401, 20)
        r = requests.get(f"{url}/api/v1/recognition/subjects", headers={"x-api-key": "frk_wrong"})
        assert (r.status_code, r.json()["code"]) == (401, 10)
        r = requests.post(f"{url}/api/v1/recognition/faces?subject=Ann", headers={"x-api-key": door},
                          files={"file": ("a.png", photo(1))})
        assert (r.status_code, r.json()["code"]) == (403, 32)
        r = requests.post(f"{url}/v1/vision/face/register", data={"userid": "Ann", "api_key": door},
                          files={"image": ("a.png", photo(1))})
        assert r.status_code == 403 and r.json()["success"] is False
        assert requests.get(f"{url}/api/v1/recognition/subjects").json()["code"] == 20
        r = requests.post(f"{url}/api/v1/recognition/faces?subject=Ann", headers={"x-api-key": manage},
                          files={"file": ("a.png", photo(1))})
        assert r.status_code == 200
        r = requests.post(f"{url}/api/v1/recognition/recognize", headers={"x-api-key": door},
                          files={"file": ("a.png", photo(1, 4))})
        assert r.json()["result"][0]["subjects"][0]["subject"] == "Ann"
        r = requests.post(f"{url}/v1/vision/face/list", data={"api_key": door})
        assert r.json() == {"success": True, "faces": ["Ann"]}
        r = requests.post(f"{url}/v1/vision/face/list")
        assert (r.status_code, r.json()) == (401, {"success": False, "error": "Incorrect api key"})
        keys.revoke("doorbell")
        r = requests.post(f"{url}/v1/vision/face/list", data={"api_key": door})
        assert r.status_code == 401
        stored = (recognizer.gallery.root / ".facerec" / "api_keys.json").read_text()
        assert door not in stored and manage not in stored  # stored hashed


# -- DeepStack ----------------------------------------------------------------------------


def test_deepstack_register_recognize_list_match_delete(recognizer):
    with serving(recognizer) as (url, _, _, _):
        face = f"{url}/v1/vision/face"
        r = requests.post(f"{face}/register", data={"userid": "Ann"},
                          files=[("image", ("a0.png", photo(1, 0))), ("image1", ("a1.png", photo(1, 1)))])
        assert r.status_code == 200 and r.json()["success"] is True
        assert r.json()["message"].startswith("face added") and "2 photo(s)" in r.json()["message"]
        requests.post(f"{face}/register", data={"userid": "Bob"}, files={"image": ("b.png", photo(2))})
        assert requests.post(f"{face}/list").json() == {"success": True, "faces": ["Ann", "Bob"]}

        group = png_bytes(synthetic_photo([1, 7]))  # Ann beside a stranger
        r = requests.post(f"{face}/recognize", data={"min_confidence": "0.45"}, files={"image": ("g.png", group)})
        preds = sorted(r.json()["predictions"], key=lambda p: p["x_min"])
        assert [p["userid"] for p in preds] == ["Ann", "unknown"]
        assert preds[0]["confidence"] >= 0.60 and preds[1]["confidence"] < 0.40
        assert set(preds[0]) == {"confidence", "userid", "x_min", "y_min", "x_max", "y_max"}
        above = f"{min(1.0, preds[0]['confidence'] + 1e-4):.5f}"
        r = requests.post(f"{face}/recognize", data={"min_confidence": above}, files={"image": ("g.png", group)})
        assert all(p["userid"] == "unknown" for p in r.json()["predictions"])

        for path in (face, face + "/"):
            r = requests.post(path, files={"image": ("g.png", group)})
            assert r.json()["success"] is True and len(r.json()["predictions"]) == 2
        r = requests.post(f"{face}/match", files={"image1": ("a.png", photo(1)), "image2": ("b.png", photo(1, 8))})
        assert r.json()["similarity"] >= 0.60
        r = requests.post(f"{face}/match", files={"image1": ("a.png", photo(1)), "image2": ("b.png", photo(2))})
        assert r.json()["similarity"] < 0.40

        assert requests.post(f"{face}/delete", data={"userid": "Bob"}).json() == {"success": True}
        assert requests.post(f"{face}/list").json()["faces"] == ["Ann"]
        for r, status in [(requests.post(f"{face}/delete", data={"userid": "Bob"}), 404),
                          (requests.post(f"{face}/register", files={"image": ("a.png", photo(1))}), 400),
                          (requests.post(f"{face}/register", data={"userid": "Cy"}), 400),
                          (requests.post(f"{face}/register", data={"userid": "Cy"}, files={"image": ("b.png", BLACK)}), 400),
                          (requests.post(f"{face}/recognize", files={"image": ("x.jpg", b"junk")}), 400),
                          (requests.post(f"{face}/recognize", data={"min_confidence": "2"},
                                         files={"image": ("a.png", photo(1))}), 400)]:
            assert r.status_code == status and r.json()["success"] is False and r.json()["error"], r.text
        assert requests.post(f"{face}/list").json()["faces"] == ["Ann"]


def test_double_take_requests_replayed(recognizer):
    """The requests Double Take sends (api/src/util/detectors/compreface.js, deepstack.js)."""
    with serving(recognizer) as (url, _, keys, _):
        key = keys.create("double-take", "manage")
        h = {"x-api-key": key}
        r = requests.post(f"{url}/api/v1/recognition/faces", params={"subject": "ann"}, headers=h,
                          files={"file": ("ann.png", photo(1))})
        assert r.status_code == 200
        r = requests.post(f"{url}/api/v1/recognition/recognize?face_plugins=undefined", params={"det_prob_threshold": 0.8},
                          headers=h, files={"file": ("snap.png", photo(1, 3))})
        result = r.json()["result"]
        assert result[0]["subjects"][0]["subject"] == "ann" and result[0]["subjects"][0]["similarity"] * 100 >= 60
        r = requests.post(f"{url}/api/v1/recognition/recognize?face_plugins=undefined", headers=h,
                          files={"file": ("snap.png", BLACK)})
        assert r.json()["code"] == 28  # Double Take reads this as "no faces"
        r = requests.post(f"{url}/v1/vision/face/recognize", data={"api_key": key}, files={"image": ("s.png", photo(1, 2))})
        assert r.json()["predictions"][0]["userid"] == "ann"
        assert requests.delete(f"{url}/api/v1/recognition/faces", params={"subject": "ann"}, headers=h).json() == {"deleted": 1}
        r = requests.post(f"{url}/v1/vision/face/delete", data={"userid": "ann", "api_key": key})
        assert r.json() == {"success": True}


# -- limits ---------------------------------------------------------------------------------


def test_body_cap_and_full_server_answer_in_dialect(recognizer):
    small = Limits(max_photo=2000, max_body=50_000)
    with serving(recognizer, small) as (url, _, _, _):
        big = b"\xff" * 60_000
        r = requests.post(f"{url}/api/v1/recognition/recognize", files={"file": ("big.jpg", big)})
        assert r.status_code == 413 and r.json()["code"] == 26
        r = requests.post(f"{url}/v1/vision/face/recognize", files={"image": ("big.jpg", big)})
        assert r.status_code == 413 and r.json()["success"] is False
        r = requests.post(f"{url}/api/v1/recognition/recognize", files={"file": ("p.png", b"\x89PNG" + b"0" * 3000)})
        assert r.status_code == 400 and "too large" in r.json()["message"]
        head = b'--zz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        chunks = (c for c in [head] + [b"x" * 10_000] * 8)  # chunked: no Content-Length; a well-formed part that grows
        r = requests.post(f"{url}/v1/vision/face/recognize", data=chunks,
                          headers={"Content-Type": "multipart/form-data; boundary=zz"})
        assert r.status_code == 413 and r.json()["success"] is False
    with serving(recognizer, Limits(max_pending=0)) as (url, _, _, _):
        r = requests.post(f"{url}/api/v1/recognition/recognize", files={"file": ("a.png", photo(1))})
        assert r.status_code == 503 and r.json()["code"] == 41
        r = requests.post(f"{url}/v1/vision/face/list")
        assert r.status_code == 503 and r.json()["success"] is False
        assert requests.post(f"{url}/v1/vision/face/list").status_code == 503  # still answering
    with serving(recognizer, Limits(timeout_s=0.001)) as (url, _, _, _):
        r = requests.post(f"{url}/api/v1/recognition/recognize", files={"file": ("a.png", photo(1))})
        assert r.status_code == 503 and r.json()["code"] == 41 and "took over" in r.json()["message"]


def test_app_and_api_enrolling_at_once_lose_nothing(recognizer):
    """The app (People directly) and the API enrol into one gallery at the same time."""
    from facerec.people import People

    people = People(recognizer)
    with serving(recognizer) as (url, _, _, _):
        errors: list[str] = []

        def api_side():
            for seed in range(6):
                r = requests.post(f"{url}/api/v1/recognition/faces?subject=Ann", files={"file": ("a.png", photo(1, seed))})
                if r.status_code != 200:
                    errors.append(r.text)

        def app_side():
            for seed in range(6):
                try:
                    people.enroll("Bob", photo(2, seed), f"b{seed}.png", confirm=True)
                except Exception as exc:  # reported below
                    errors.append(repr(exc))

        threads = [threading.Thread(target=api_side), threading.Thread(target=app_side)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert {p.name: p.photos for p in people.list()} == {"Ann": 6, "Bob": 6}
        r = requests.get(f"{url}/api/v1/recognition/faces?size=100").json()
        assert r["total_elements"] == 12
        r = requests.post(f"{url}/v1/vision/face/recognize", files={"image": ("b.png", photo(2, 11))})
        assert r.json()["predictions"][0]["userid"] == "Bob"  # enrolled by the app, named by the API


# -- the real clients on real faces ------------------------------------------------------------


def _lfw_people(n: int = 3, k: int = 3) -> dict[str, list[Path]]:
    if not LFW.is_dir():
        pytest.fail(f"{LFW} is missing")
    chosen = {}
    for d in sorted(LFW.iterdir()):
        photos = sorted(d.glob("*.jpg"))
        if len(photos) >= k + 1:
            chosen[d.name] = photos[:k + 1]
        if len(chosen) == n:
            break
    return chosen


@pytest.fixture(scope="module")
def real_models():
    """The default detector and embedder, loaded once for the module."""
    from facerec.pipeline import Models
    from facerec.settings import Settings

    models = Models(Settings())
    models.detector, models.embedder
    return models


@pytest.fixture
def real_recognizer(real_models, tmp_path):
    from facerec.pipeline import FaceRecognizer
    from facerec.settings import Settings

    return FaceRecognizer(Settings(gallery=tmp_path / "gallery", cache_dir=real_models.settings.cache_dir),
                          detector=real_models.detector, embedder=real_models.embedder)


@needs_shared
@pytest.mark.realdata
@pytest.mark.weights
def test_compreface_sdk_enrols_and_names_lfw_people(real_recognizer):
    compreface = pytest.importorskip("compreface")
    people = _lfw_people()
    with serving(real_recognizer) as (url, port, keys, _):
        key = keys.create("sdk", "manage")
        service = compreface.CompreFace("http://127.0.0.1", str(port)).init_face_recognition(key)
        collection, subjects = service.get_face_collection(), service.get_subjects()
        for name, photos in people.items():
            for p in photos[:-1]:
                added = collection.add(image_path=str(p), subject=name)
                assert added.get("subject") == name, added
        assert sorted(subjects.list()["subjects"]) == sorted(people)
        listed = collection.list()
        assert listed["total_elements"] == 3 * len(people)
        for name, photos in people.items():
            found = service.recognize(image_path=str(photos[-1]), options={"prediction_count": 1})
            best = max(found["result"], key=lambda f: f["subjects"][0]["similarity"])
            assert best["subjects"][0]["subject"] == name and best["subjects"][0]["similarity"] >= 0.60, found
        one = listed["faces"][0]
        verified = collection.verify(image_path=str(people[one["subject"]][-1]), image_id=one["image_id"])
        assert verified["result"][0]["similarity"] >= 0.60, verified
        assert collection.delete(one["image_id"]) == one


@needs_shared
@pytest.mark.realdata
@pytest.mark.weights
def test_deepstack_python_registers_and_names_lfw_people(real_recognizer):
    deepstack = pytest.importorskip("deepstack.core")
    people = _lfw_people()
    with serving(real_recognizer) as (url, port, keys, _):
        key = keys.create("ha", "manage")
        client = deepstack.DeepstackFace(ip="127.0.0.1", port=port, api_key=key, timeout=60)
        for name, photos in people.items():
            client.register(name + "_ds", photos[0].read_bytes())
        assert {n + "_ds" for n in people} <= set(client.get_registered_faces())
        for name, photos in people.items():
            preds = client.recognize(photos[-1].read_bytes())  # min_confidence=0.45, the client's default
            assert (name + "_ds") in deepstack.get_recognized_faces(preds), preds
        stranger = next(d for d in sorted(LFW.iterdir(), reverse=True) if d.name not in people)
        preds = client.recognize(sorted(stranger.glob("*.jpg"))[0].read_bytes())
        assert deepstack.get_recognized_faces(preds) == {}, preds
