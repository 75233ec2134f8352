import requests, json
from test_api import serving, photo
from conftest import png_bytes, synthetic_photo

def test_probe(recognizer):
    with serving(recognizer) as (url, _, keys, svc):
        P = f"{url}/api/facerec/v1"
        for body in [dict(files=[("file", ("a0.png", photo(1, 0))), ("file", ("a1.png", photo(1, 1)))])]:
            r = requests.post(f"{P}/people/Ann/photos", **body); print(r.status_code, r.json())
        r = requests.post(f"{P}/people/Ann/photos", files={"file": ("b.png", photo(2))}); print(r.json())
        r = requests.post(f"{P}/people/Ann/photos", files={"file": ("two.png", png_bytes(synthetic_photo([1, 2])))}); print(r.json())
        r = requests.post(f"{P}/people/Bob/photos", files={"file": ("b.png", photo(2))}); print(r.json())
        r = requests.post(f"{P}/people/ann/photos", files={"file": ("a5.png", photo(1, 5))}); print(r.json())
        r = requests.post(f"{P}/identify", files={"file": ("g.png", png_bytes(synthetic_photo([1, 2, 7])))}); print(json.dumps(r.json()))
        print(requests.get(f"{P}/people").json(), requests.get(f"{P}/people/Ann").json())
        print(svc.threshold)
