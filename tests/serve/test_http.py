"""The real server (`python -m defectscope serve` in a subprocess) over HTTP: answers, limits, errors.

Its limits (helpers/serving.py): 1 MiB per file, 1 Mpx per image, 3 files per batch.
"""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from helpers.serving import MAX_BATCH_FILES, MAX_IMAGE_PIXELS, MAX_UPLOAD_MB, encoded_image, noisy_image, normal_images

httpx = pytest.importorskip("httpx")


NOISY = encoded_image(noisy_image(40, seed=3))
SMOOTH = encoded_image(normal_images(1, size=40, seed=11)[0])


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture
def still_serving(client, server):
    """After the test: the process is alive and answers /health and a real prediction."""
    yield
    assert server.process.poll() is None, server.log_tail()
    assert client.get("/health").json()["status"] == "ok"
    assert client.post("/predict", files={"file": ("ok.png", SMOOTH, "image/png")}).status_code == 200


def test_health_and_model(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_name"] == "ae_ssim"
    info = client.get("/model").json()
    assert info["class_names"] == ["widget"] and info["image_size"] == 32
    assert info["limits"]["max_upload_bytes"] == MAX_UPLOAD_MB * 1024 * 1024
    assert info["limits"]["max_image_pixels"] == MAX_IMAGE_PIXELS
    assert info["limits"]["concurrent_calls"] == 2


def test_predict_gives_a_verdict_against_the_threshold_and_an_overlay(client):
    info = client.get("/model").json()
    for data, verdict in ((NOISY, "DEFECT"), (SMOOTH, "OK")):
        r = client.post("/predict", files={"file": ("part.png", data, "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["verdict"] == verdict and body["defective"] == (verdict == "DEFECT")
        assert body["threshold"] == info["image_threshold"]
        assert body["defective"] == (body["score"] > body["threshold"]) == (body["normalized_score"] > 0.5)
        assert 0 <= body["defect_area"] <= 1 and (body["width"], body["height"]) == (40, 40)
        overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))
        assert overlay.format == "PNG" and overlay.size == (40, 40) and body["overlay_jpeg"] is None


def test_the_overlay_comes_as_jpeg_when_asked_and_a_bad_format_is_refused(client):
    r = client.post("/predict", params={"overlay_format": "jpeg"}, files={"file": ("part.png", NOISY, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_jpeg"])))
    assert overlay.format == "JPEG" and overlay.size == (40, 40) and body["overlay_png"] is None
    batch = client.post("/predict/batch", params={"overlay_format": "jpeg"},
                        files=[("files", ("a.png", NOISY, "image/png")), ("files", ("b.png", SMOOTH, "image/png"))])
    assert [r["overlay_jpeg"] is not None and r["overlay_png"] is None for r in batch.json()["results"]] == [True] * 2
    off = client.post("/predict", params={"overlay": "false", "overlay_format": "jpeg"},
                      files={"file": ("part.png", NOISY, "image/png")}).json()
    assert off["overlay_png"] is None and off["overlay_jpeg"] is None
    refused = client.post("/predict", params={"overlay_format": "gif"}, files={"file": ("p.png", NOISY, "image/png")})
    assert refused.status_code == 422 and "overlay_format" in refused.json()["detail"]


def test_the_same_image_scores_the_same_by_every_route(client):
    single = client.post("/predict", files={"file": ("a.png", NOISY, "image/png")}).json()
    batch = client.post("/predict/batch", params={"overlay": "false"},
                        files=[("files", ("a.png", NOISY, "image/png")), ("files", ("b.png", SMOOTH, "image/png"))])
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["filename"] for r in results] == ["a.png", "b.png"]
    assert [r["verdict"] for r in results] == ["DEFECT", "OK"]
    assert results[0]["score"] == pytest.approx(single["score"], rel=1e-5)
    assert results[0]["overlay_png"] is None


def test_concurrent_requests_all_succeed_with_the_same_answer(client):
    def call(i: int) -> float:
        data = NOISY if i % 2 else SMOOTH
        r = client.post("/predict", params={"overlay": "false"}, files={"file": (f"{i}.png", data, "image/png")})
        assert r.status_code == 200, r.text
        return r.json()["score"]

    with ThreadPoolExecutor(8) as pool:
        scores = list(pool.map(call, range(24)))
    assert len({round(s, 5) for s in scores[0::2]}) == 1 and len({round(s, 5) for s in scores[1::2]}) == 1


def test_openapi_describes_the_endpoints(client):
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/health", "/model"} <= set(spec["paths"])
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["properties"]["file"]["format"] == "binary"
    assert {"200", "413", "415", "422"} <= set(spec["paths"]["/predict"]["post"]["responses"])


def test_the_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    for marker in ('id="verdict"', 'id="score"', 'id="tally"', 'id="file-input"'):
        assert marker in r.text
    assert "http://" not in r.text and "https://" not in r.text and "<link" not in r.text  # no CDN, no fetches out


def bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buffer, format="PNG")  # 4 Mpx over the 1 Mpx cap, a few kB on the wire
    return buffer.getvalue()


BAD_UPLOADS = {
    "not an image": ({"files": {"file": ("notes.png", b"just some text", "image/png")}}, 422, "not_an_image"),
    "truncated image": ({"files": {"file": ("cut.png", NOISY[: len(NOISY) // 2], "image/png")}}, 422, "not_an_image"),
    "empty file": ({"files": {"file": ("empty.png", b"", "image/png")}}, 400, "empty"),
    "over the size limit": ({"files": {"file": ("big.png", os.urandom(MAX_UPLOAD_MB * 2**20 + 10), "image/png")}},
                            413, "too_large"),
    "decompression bomb": ({"files": {"file": ("bomb.png", bomb_png(), "image/png")}}, 413, "too_many_pixels"),
    "part is not an image type": ({"files": {"file": ("notes.txt", NOISY, "text/plain")}}, 415, "wrong_content_type"),
    "body is JSON": ({"json": {"path": "/etc/hostname"}}, 415, "wrong_content_type"),
    "body is a urlencoded path": ({"data": {"path": "/etc/hostname"}}, 415, "wrong_content_type"),
    "a path field beside the file": ({"files": {"file": ("a.png", SMOOTH, "image/png")},
                                      "data": {"path": "/etc/hostname"}}, 400, "bad_form"),
    "no file field": ({"files": {"image": ("a.png", SMOOTH, "image/png")}}, 400, "bad_form"),
    "two files to /predict": ({"files": [("file", ("a.png", SMOOTH, "image/png")),
                                         ("file", ("b.png", SMOOTH, "image/png"))]}, 413, "too_many_files"),
    "unknown class": ({"files": {"file": ("a.png", SMOOTH, "image/png")}, "data": {"class_name": "gizmo"}},
                      400, "bad_class"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_uploads_get_a_clear_4xx_and_the_server_keeps_serving(client, still_serving, case):
    kwargs, status, code = BAD_UPLOADS[case]
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and len(body["detail"]) > 10


def test_a_chunked_upload_over_the_limit_is_cut_off(client, still_serving):
    head = (b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")

    def body():
        yield head
        for _ in range(4 * MAX_UPLOAD_MB * 16):  # 4x the limit in 64 KiB pieces, no Content-Length
            yield b"\0" * 65536

    r = client.post("/predict", content=body(), headers={"content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"


def test_batch_limits(client, still_serving):
    files = [("files", (f"{i}.png", SMOOTH, "image/png")) for i in range(MAX_BATCH_FILES + 1)]
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 413 and r.json()["error"] == "too_many_files"
    # one bad file refuses the batch and names it
    files = [("files", ("good.png", SMOOTH, "image/png")), ("files", ("bad.png", b"nope", "image/png"))]
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 422 and "file 2 ('bad.png')" in r.json()["detail"]
