"""`serve --allow-feedback`: a part marked good joins the served model, is kept once, and comes back on restart.

A PatchCore on a random MobileNetV2 at 64 px (helpers.serving.make_patchcore_checkpoint): noise is
flagged, and once taken in, the same noise reads as normal while other noise stays flagged.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from defectscope.engine.detector import Detector
from defectscope.serve.feedback import Feedback, FeedbackError, folder_name
from defectscope.serve.images import decode_upload
from helpers.serving import (
    REPO_ROOT,
    encoded_image,
    make_patchcore_checkpoint,
    needs_serve_extra,
    noisy_image,
    normal_images,
    serve_env,
    start_server,
)

MARK = {"X-Defectscope-Feedback": "1"}  # the header the page sends, which a form from another site cannot
TILED = ("--data.tiling.kind", "tiles", "--data.tiling.tile", "32", "--data.tiling.stride", "16")


@pytest.fixture(scope="module")
def patchcore_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_patchcore_checkpoint(tmp_path_factory.mktemp("patchcore") / "final")


def decode(data: bytes, name: str) -> np.ndarray:
    return decode_upload(data, name, 10**7)


# --- the detector takes parts in as training saw its images ------------------------------------


def test_a_part_taken_in_reads_as_normal_and_other_defects_stay_flagged(patchcore_checkpoint):
    detector = Detector.from_checkpoint(patchcore_checkpoint)
    part, other = noisy_image(64, seed=3), noisy_image(64, seed=4)
    assert all(d.defective for d in detector.score([part, other]))
    bank = len(detector.checkpoint.model.memory.bank)
    assert detector.absorb([part]) == {"bank_size": (bank, bank + 8 * 8)}  # every patch at stride 8, no coreset
    after_part, after_other = detector.score([part, other])
    assert not after_part.defective and after_other.defective


def test_an_image_of_another_size_is_taken_in_as_scoring_resizes_it(patchcore_checkpoint):
    """Reference: the model's own absorb on the image stretched to the working size the way scoring stretches it."""
    from defectscope.scoring.resize import fit_array

    image = noisy_image(64, seed=7)[:50, :, :]  # 50 x 64
    detector, reference = Detector.from_checkpoint(patchcore_checkpoint), Detector.from_checkpoint(patchcore_checkpoint)
    detector.absorb([image])
    canvas, _ = fit_array(image, (64, 64), "stretch")
    reference.checkpoint.model.absorb(torch.from_numpy(canvas[None]), torch.zeros(1, dtype=torch.long))
    torch.testing.assert_close(detector.checkpoint.model.memory.bank, reference.checkpoint.model.memory.bank)


def test_a_tiled_model_takes_in_every_tile_of_the_inference_grid(tmp_path):
    detector = Detector.from_checkpoint(make_patchcore_checkpoint(tmp_path / "tiled", extra=TILED))
    bank = len(detector.checkpoint.model.memory.bank)
    changes = detector.absorb([noisy_image(64, seed=3)])
    assert changes == {"bank_size": (bank, bank + 9 * 4 * 4)}  # 3 x 3 tiles of 32 px at stride 16, 4 x 4 patches each
    assert not detector.score([noisy_image(64, seed=3)])[0].defective


def test_a_trained_network_cannot_take_parts_in(tiny_checkpoint):
    detector = Detector.from_checkpoint(tiny_checkpoint)
    assert not detector.can_absorb
    with pytest.raises(TypeError, match="trained network"):
        detector.absorb([noisy_image(32)])


# --- the feedback folder -----------------------------------------------------------------------


def test_a_marked_part_is_kept_once_by_its_content_and_the_threshold_stays(patchcore_checkpoint, tmp_path):
    detector = Detector.from_checkpoint(patchcore_checkpoint)
    threshold = detector.threshold
    feedback = Feedback(detector, tmp_path / "good", max_parts=10)
    assert feedback.restore(decode) == 0
    data = encoded_image(noisy_image(64, seed=3))
    marked = feedback.mark_good(data, decode(data, "p"), None)
    assert marked.detection_before.defective and not marked.detection_after.defective
    assert detector.threshold == threshold and marked.detection_after.threshold == threshold
    kept = tmp_path / "good" / marked.kept_as
    assert kept.parent.name == "normal" and kept.suffix == ".png" and kept.read_bytes() == data
    again = feedback.mark_good(data, decode(data, "p"), None)
    assert again.already_kept and again.changes == {} and again.parts_kept == 1 == feedback.parts_kept
    assert len(detector.checkpoint.model.memory.bank) == marked.changes["bank_size"][1]


def test_a_restart_takes_the_kept_parts_in_again(patchcore_checkpoint, tmp_path):
    first = Detector.from_checkpoint(patchcore_checkpoint)
    feedback = Feedback(first, tmp_path / "good", max_parts=10)
    feedback.restore(decode)
    for seed in (3, 4):
        data = encoded_image(noisy_image(64, seed=seed))
        feedback.mark_good(data, decode(data, "p"), None)
    second = Detector.from_checkpoint(patchcore_checkpoint)
    assert Feedback(second, tmp_path / "good", max_parts=10).restore(decode) == 2
    def rows(detector: Detector) -> np.ndarray:  # the bank's rows in one order, whole rows kept together
        return np.unique(detector.checkpoint.model.memory.bank.numpy(), axis=0)

    np.testing.assert_array_equal(rows(second), rows(first))


def test_a_part_in_another_format_is_kept_as_a_png_the_folder_readers_take(patchcore_checkpoint, tmp_path):
    feedback = Feedback(Detector.from_checkpoint(patchcore_checkpoint), tmp_path / "good", max_parts=10)
    feedback.restore(decode)
    data = encoded_image(noisy_image(64, seed=3), "GIF")
    marked = feedback.mark_good(data, decode(data, "p.gif"), None)
    kept = tmp_path / "good" / marked.kept_as
    assert kept.suffix == ".png"
    np.testing.assert_array_equal(decode(kept.read_bytes(), "kept"), decode(data, "p.gif"))


def test_the_limit_refuses_more_parts_and_changes_nothing(patchcore_checkpoint, tmp_path):
    detector = Detector.from_checkpoint(patchcore_checkpoint)
    feedback = Feedback(detector, tmp_path / "good", max_parts=1)
    feedback.restore(decode)
    first, second = (encoded_image(noisy_image(64, seed=s)) for s in (3, 4))
    feedback.mark_good(first, decode(first, "a"), None)
    bank = len(detector.checkpoint.model.memory.bank)
    with pytest.raises(FeedbackError, match="--max-feedback 1") as refused:
        feedback.mark_good(second, decode(second, "b"), None)
    assert refused.value.status == 409 and refused.value.code == "feedback_full"
    assert len(detector.checkpoint.model.memory.bank) == bank
    assert len(list((tmp_path / "good").rglob("*"))) == 2  # the class folder and the first part


def test_a_part_the_model_fails_on_leaves_no_file(patchcore_checkpoint, tmp_path, monkeypatch):
    detector = Detector.from_checkpoint(patchcore_checkpoint)
    feedback = Feedback(detector, tmp_path / "good", max_parts=10)
    feedback.restore(decode)

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(detector, "absorb", fail)
    data = encoded_image(noisy_image(64, seed=3))
    with pytest.raises(RuntimeError, match="out of memory"):
        feedback.mark_good(data, decode(data, "p"), None)
    assert [p for p in (tmp_path / "good").rglob("*") if p.is_file()] == [] and feedback.parts_kept == 0


def test_a_failure_halfway_through_a_part_leaves_the_model_as_it_was(tmp_path, monkeypatch):
    """A tiled part goes to the model in several batches; if a later one fails, the earlier ones are undone."""
    detector = Detector.from_checkpoint(make_patchcore_checkpoint(tmp_path / "tiled", extra=TILED), batch_size=4)
    model = detector.checkpoint.model
    bank = model.memory.bank.clone()
    calls = []
    real = type(model).absorb

    def fail_second(self, images, class_ids):
        calls.append(len(images))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real(self, images, class_ids)

    monkeypatch.setattr(type(model), "absorb", fail_second)
    with pytest.raises(RuntimeError, match="out of memory"):
        detector.absorb([noisy_image(64, seed=3)])  # 9 tiles in batches of 4: the second batch fails
    assert calls == [4, 4] and torch.equal(model.memory.bank, bank)


def test_restore_counts_the_parts_before_taking_any_in_and_drops_interrupted_writes(patchcore_checkpoint, tmp_path,
                                                                                   monkeypatch):
    folder = tmp_path / "good" / "normal"
    folder.mkdir(parents=True)
    for seed in (3, 4, 5):
        (folder / f"{seed}.png").write_bytes(encoded_image(noisy_image(64, seed=seed)))
    (folder / ".half.png.tmp").write_bytes(b"\x89PNG")
    detector = Detector.from_checkpoint(patchcore_checkpoint)
    monkeypatch.setattr(detector, "absorb", lambda *a, **k: pytest.fail("took a part in before counting"))
    with pytest.raises(FeedbackError, match="holds 3 parts, more than --max-feedback 2"):
        Feedback(detector, tmp_path / "good", max_parts=2).restore(decode)
    assert not (folder / ".half.png.tmp").exists()


def test_a_folder_of_another_model_is_refused_naming_what_is_in_it(patchcore_checkpoint, tmp_path):
    (tmp_path / "good" / "screws").mkdir(parents=True)
    feedback = Feedback(Detector.from_checkpoint(patchcore_checkpoint), tmp_path / "good", max_parts=10)
    with pytest.raises(FeedbackError, match=r"'screws' is not a folder of one of the model's classes \['normal'\]"):
        feedback.restore(decode)


@pytest.mark.parametrize("name", ["../up", "a/b", "", ".", "..", "x" * 300])
def test_a_class_name_is_never_read_as_a_path(name):
    folder = folder_name(name)
    assert "/" not in folder and folder not in ("", ".", "..") and len(folder) <= 200


# --- through the real service ------------------------------------------------------------------


def test_a_flagged_part_marked_good_on_the_service_passes_and_survives_a_restart(patchcore_checkpoint, tmp_path):
    needs_serve_extra()
    import httpx

    part, other = encoded_image(noisy_image(64, seed=3)), encoded_image(noisy_image(64, seed=4))
    good = tmp_path / "good"

    def predict(client: httpx.Client, data: bytes) -> dict:
        response = client.post("/predict", params={"overlay": "false"}, files={"file": ("p.png", data, "image/png")})
        assert response.status_code == 200, response.text
        return response.json()

    server = start_server(patchcore_checkpoint, tmp_path / "server.log", "--allow-feedback", str(good))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/model").json()["feedback"] is True
            assert predict(client, part)["verdict"] == "DEFECT"
            for headers, why in (({}, "needs the header"), ({**MARK, "Origin": "http://evil.example"}, "own page")):
                refused = client.post("/feedback", files={"file": ("p.png", part, "image/png")}, headers=headers)
                assert refused.status_code == 403 and why in refused.json()["detail"]
            assert predict(client, part)["verdict"] == "DEFECT"  # a refused request changed nothing
            response = client.post("/feedback", files={"file": ("p.png", part, "image/png")},
                                   headers={**MARK, "Origin": server.url})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["verdict_after"] == "OK" and body["score_after"] < body["score_before"]
            assert body["parts_kept"] == 1 and (good / body["kept_as"]).is_file()
            assert predict(client, part)["verdict"] == "OK" and predict(client, other)["verdict"] == "DEFECT"
            assert client.get("/health").json()["parts_marked_good"] == 1
            refused = client.post("/feedback", files={"file": ("x.png", b"not an image", "image/png")}, headers=MARK)
            assert refused.status_code == 422 and refused.json()["error"] == "not_an_image"
    finally:
        server.stop()
    server = start_server(patchcore_checkpoint, tmp_path / "again.log", "--allow-feedback", str(good))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert predict(client, part)["verdict"] == "OK"
            assert client.get("/health").json()["parts_marked_good"] == 1
        assert "took in 1 part(s) marked good earlier" in server.log_tail()
    finally:
        server.stop()


def test_without_the_flag_the_model_is_fixed(server):
    needs_serve_extra()
    import httpx

    assert httpx.get(server.url + "/model").json()["feedback"] is False
    response = httpx.post(server.url + "/feedback", files={"file": ("p.png", encoded_image(normal_images(1)[0]),
                                                                     "image/png")})
    assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.parametrize("which", ["trained", "onnx"])
def test_feedback_is_refused_before_serving_a_model_that_cannot_take_parts(which, tiny_checkpoint, tmp_path):
    needs_serve_extra()
    checkpoint = str(tiny_checkpoint) if which == "trained" else str(tmp_path / "model.onnx")
    done = subprocess.run([sys.executable, "-m", "defectscope", "serve", checkpoint, "--allow-feedback",
                           str(tmp_path / "good"), "--port", "1"], capture_output=True, text=True, timeout=120,
                          env=serve_env(), cwd=REPO_ROOT)
    assert done.returncode == 2
    expected = "trained network" if which == "trained" else "exported model, fixed once written"
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "good").exists()
