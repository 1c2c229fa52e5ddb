"""Detector: the one inference path; its numbers must equal the checkpoint's own, at the input's size."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from defectscope.data.image_io import load_image
from defectscope.data.transforms import from_uint8, resize_image, to_uint8
from defectscope.engine import CheckpointError, load_checkpoint
from defectscope.engine.detector import Detector, DetectorLike, normalized_score
from helpers.serving import noisy_image, normal_images
from helpers.waiting import wait_until


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return Detector.from_checkpoint(tiny_checkpoint)


def test_is_a_detector_like(detector):
    assert isinstance(detector, DetectorLike)


def test_matches_the_checkpoint_on_a_file_decoded_like_predict(detector, tiny_checkpoint, tmp_path):
    """Same decode (load_image), resize and 8-bit rounding as the dataset, so the same score and map."""
    path = tmp_path / "part.png"
    Image.fromarray((noisy_image(48, seed=7) * 255).astype(np.uint8)).save(path)
    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.model.eval()
    with torch.no_grad():
        image = from_uint8(to_uint8(resize_image(load_image(path), 32)))
        ref = ckpt.model.predict(image[None], torch.zeros(1, dtype=torch.long))
    det = detector.score([load_image(path).permute(1, 2, 0).numpy()])[0]
    assert det.score == pytest.approx(float(ref.image_score[0]), rel=1e-6)
    assert det.anomaly_map.shape == (48, 48)  # back at the input's own size
    back = torch.nn.functional.interpolate(ref.anomaly_map[None], size=(48, 48), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(det.anomaly_map, back[0, 0].numpy(), rtol=1e-5, atol=1e-6)


def test_each_map_has_its_own_images_size_in_one_call(detector):
    images = [noisy_image(32), noisy_image(17, 2)[:, :9], np.zeros((70, 40, 3), np.uint8), normal_images(1)[0][..., 0]]
    shapes = [d.anomaly_map.shape for d in detector.score(images)]
    assert shapes == [(32, 32), (17, 9), (70, 40), (32, 32)]


def test_uint8_and_float_inputs_agree(detector):
    as_uint8 = (noisy_image(32, 4) * 255).round().astype(np.uint8)
    a, b = detector.score([as_uint8, as_uint8.astype(np.float32) / 255])
    assert a.score == pytest.approx(b.score, abs=1e-6)


def test_batching_does_not_change_results(tiny_checkpoint):
    images = [noisy_image(32, s) for s in range(5)] + list(normal_images(4))
    one = Detector.from_checkpoint(tiny_checkpoint, batch_size=1).score(images)
    many = Detector.from_checkpoint(tiny_checkpoint, batch_size=4).score(images)
    # conv kernels may sum in another order for another batch size: float rounding, nothing more
    np.testing.assert_allclose([d.score for d in one], [d.score for d in many], rtol=1e-4, atol=1e-5)


def test_verdict_area_and_normalised_score_follow_the_calibration(detector):
    cal = detector.calibration
    detections = detector.score([noisy_image(32, s) for s in range(3)] + list(normal_images(3, seed=9)))
    verdicts = [d.defective for d in detections]
    assert verdicts == [True] * 3 + [False] * 3  # noise above the threshold, smooth gradients below
    for d in detections:
        assert d.threshold == cal.image.threshold.value
        assert d.defective == (d.score > d.threshold) == (d.normalized_score > 0.5)
        assert d.defect_area == pytest.approx(float((d.anomaly_map > cal.pixel.value).mean()))
        assert d.class_name == "widget"


def test_normalised_score_anchors():
    assert normalized_score(2.0, threshold=2.0, mean=1.0, std=0.3) == 0.5
    assert normalized_score(1.0, threshold=2.0, mean=1.0, std=0.3) == 0.25
    assert normalized_score(3.0, threshold=2.0, mean=1.0, std=0.3) == 0.75
    assert normalized_score(9.0, threshold=2.0, mean=1.0, std=0.3) == 1.0
    assert normalized_score(-9.0, threshold=2.0, mean=1.0, std=0.3) == 0.0
    # one held-out image (mean == threshold): the spread falls back to the std, then to 1
    assert normalized_score(2.5, threshold=2.0, mean=2.0, std=0.5) == 0.75
    assert normalized_score(3.0, threshold=2.0, mean=2.0, std=0.0) == 0.75
    hair = float(np.nextafter(1e6, 2e6))  # the next float above the threshold, far closer than the spread
    assert normalized_score(hair, threshold=1e6, mean=-1e12, std=1.0) > 0.5  # rounds to 0.5 without the nudge


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(a=finite, b=finite, threshold=finite, mean=finite, std=st.floats(0, 1e3))
def test_normalised_score_is_monotone_bounded_and_agrees_with_the_verdict(a, b, threshold, mean, std):
    na, nb = (normalized_score(x, threshold, mean, std) for x in (a, b))
    assert 0.0 <= na <= 1.0
    if a <= b:
        assert na <= nb
    assert (na > 0.5) == (a > threshold)


def test_class_names_are_checked(detector, two_class_checkpoint):
    with pytest.raises(ValueError, match="not one of"):
        detector.score([noisy_image()], class_name="gizmo")
    two = Detector.from_checkpoint(two_class_checkpoint)
    with pytest.raises(ValueError, match="name one of"):
        two.score([noisy_image()])
    assert two.score([noisy_image()], class_name="gadget")[0].class_name == "gadget"


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 3), np.int64),
                                 np.full((4, 4, 3), np.nan, np.float32), np.zeros((0, 4, 3), np.uint8)])
def test_bad_arrays_are_refused_naming_the_image(detector, bad):
    with pytest.raises(ValueError, match="image 1"):
        detector.score([noisy_image(), bad])


def test_info_names_the_model_and_its_calibration(detector):
    info = detector.info()
    assert info["model_name"] == "ae_ssim" and info["class_names"] == ["widget"] and info["image_size"] == 32
    assert info["image_threshold"] == detector.calibration.image.threshold.value
    assert (info["false_alarm_rate"], info["held_out_normals"]) == (1 / 9, 8)  # what the threshold promises
    assert {"pixel_threshold", "defectscope_version", "backend"} <= set(info)


def test_concurrent_calls_give_the_sequential_answers(detector):
    images = [noisy_image(32, s) for s in range(8)]
    expected = [d.score for d in detector.score(images)]
    got: dict[int, float] = {}

    def work(i: int) -> None:
        for _ in range(3):
            got[i] = detector.score([images[i]])[0].score

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose([got[i] for i in range(8)], expected, rtol=1e-5)


def test_a_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere"):
        Detector.from_checkpoint(tmp_path / "nowhere")


@pytest.mark.parametrize("cache", [True, False])
def test_a_file_scores_on_the_line_as_evaluation_and_calibration_scored_it(tiny_checkpoint, tmp_path, cache):
    """The threshold is set on scores of the dataset's images (8 bits at the working size, cached or not); a part
    on the line must get the same score from the same file, or the promise is about other numbers."""
    import dataclasses

    from defectscope.data.dataset import dataset_of
    from defectscope.data.image_io import load_image_array
    from defectscope.data.sample import Record
    from defectscope.scoring.resize import fit_array

    path = tmp_path / "part.png"
    Image.fromarray((noisy_image(61, seed=8)[:45] * 255).astype(np.uint8)).save(path)  # 45 x 61: a real resize
    ckpt = load_checkpoint(tiny_checkpoint)
    name = ckpt.class_names[0]
    data = dataclasses.replace(ckpt.config.data, cache=cache)
    sample = dataset_of([Record(path, None, 0, name, "good")], data, {name: 0})[0]
    canvas, _ = fit_array(load_image_array(path), (32, 32), "stretch")  # what the Detector hands the network
    np.testing.assert_array_equal(canvas, sample.image.numpy())  # one resampling, one rounding: the same values
    with torch.no_grad():
        expected = float(ckpt.model.eval().predict(sample.image[None], torch.zeros(1, dtype=torch.long)).image_score[0])
    assert Detector(ckpt).score([load_image_array(path)])[0].score == pytest.approx(expected, rel=1e-6)


def network_call_sizes(detector: Detector) -> list[int]:
    """The number of images in each of `detector`'s network calls, recorded from now on."""
    sizes: list[int] = []
    network = detector.network

    def counted(images, class_ids):
        sizes.append(len(images))
        return network(images, class_ids)

    detector.network = counted
    return sizes


def test_patchcore_searching_exactly_runs_one_image_per_network_call_whatever_the_batch(tmp_path):
    """Its exact bank search holds a block of distances per image: batches cost memory and time
    (docs/results/speed.md)."""
    from helpers.serving import make_patchcore_checkpoint

    detector = Detector.from_checkpoint(make_patchcore_checkpoint(tmp_path / "final"), batch_size=8)
    sizes = network_call_sizes(detector)
    images = [noisy_image(64, seed=s) for s in range(5)]
    scores = [d.score for d in detector.score(images)]
    assert detector.network_batch == 1 and sizes == [1] * 5
    assert scores == [d.score for d in Detector.from_checkpoint(tmp_path / "final", batch_size=1).score(images)]


def test_patchcore_searching_a_graph_scores_a_batch_per_network_call(tmp_path):
    """HNSW searches each patch alone and shares the exact pass over the bank: a few images per call are
    cheaper per image, more outgrow the caches. The search is read live, so switching it on a loaded
    detector (as scripts/line_speed.py does) counts."""
    pytest.importorskip("faiss", reason="faiss-cpu is optional (pip install faiss-cpu)")
    from defectscope.models.patchcore.config import HnswSearch, TorchSearch
    from defectscope.models.patchcore.model import HNSW_IMAGES_PER_CALL
    from helpers.serving import make_patchcore_checkpoint

    path = make_patchcore_checkpoint(tmp_path / "final", extra=("--model.search", "hnsw"))
    detector = Detector.from_checkpoint(path, batch_size=8)
    sizes = network_call_sizes(detector)
    images = [noisy_image(64, seed=s) for s in range(6)]
    batched = [d.score for d in detector.score(images)]
    assert detector.network_batch == HNSW_IMAGES_PER_CALL == 4 and sizes == [4, 2]
    alone = [d.score for d in Detector.from_checkpoint(path, batch_size=1).score(images)]
    assert batched == pytest.approx(alone, rel=1e-5)
    detector.checkpoint.model.memory.search = TorchSearch()
    assert detector.network_batch == 1
    detector.checkpoint.model.memory.search = HnswSearch()
    assert detector.network_batch == 4
    assert Detector.from_checkpoint(path, batch_size=2).network_batch == 2




def test_patchcore_features_run_in_onnxruntime_on_the_cpu_with_the_torch_scores(tmp_path, monkeypatch):
    """`auto` takes onnxruntime where it is installed (3.5–4× faster backbones on a CPU); the scores are the
    torch ones to float rounding, and info says which computed them. Without onnxruntime, auto is torch and
    asking for onnxruntime names the extra to install."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is optional (pip install 'defectscope[export]')")
    import defectscope.engine.detector as detector_module
    from helpers.serving import make_patchcore_checkpoint

    path = make_patchcore_checkpoint(tmp_path / "final")
    images = [noisy_image(64, seed=s) for s in range(3)] + [normal_images(1, 64, seed=9)[0]]
    fast, plain = Detector.from_checkpoint(path), Detector.from_checkpoint(path, feature_runtime="torch")
    assert fast.info()["feature_runtime"] == "onnxruntime" and plain.info()["feature_runtime"] == "torch"
    (session,) = fast.checkpoint.model.features.onnx.sessions.values()  # the working size's, built at load
    runs = []
    run = session.run
    monkeypatch.setattr(session, "run", lambda *a, **k: runs.append(1) or run(*a, **k), raising=False)
    got, expected = fast.score(images), plain.score(images)
    assert len(runs) == len(images)  # one image per call (exact search), each through the session
    assert [d.score for d in got] == pytest.approx([d.score for d in expected], rel=1e-4)
    assert [d.defective for d in got] == [d.defective for d in expected]
    with pytest.raises(ValueError, match="feature_runtime"):
        Detector.from_checkpoint(path, feature_runtime="tensorrt")
    monkeypatch.setattr(detector_module, "onnxruntime_available", lambda: False)
    assert Detector.from_checkpoint(path).info()["feature_runtime"] == "torch"
    with pytest.raises(ValueError, match=r"defectscope\[export\]"):
        Detector.from_checkpoint(path, feature_runtime="onnxruntime")


def test_a_model_without_patch_features_stays_in_torch(detector):
    assert detector.info()["feature_runtime"] == "torch"


def test_auto_falls_back_to_torch_when_the_features_cannot_be_exported(tmp_path, monkeypatch):
    """onnxruntime is a speed-up: an exporter or runtime failure leaves the features in torch with a
    warning under auto, and is an error when onnxruntime was asked for."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is optional (pip install 'defectscope[export]')")
    from defectscope.layers.onnx_features import OnnxFeatures
    from helpers.serving import make_patchcore_checkpoint

    path = make_patchcore_checkpoint(tmp_path / "final")
    images = [noisy_image(64, seed=s) for s in range(2)]
    expected = [d.score for d in Detector.from_checkpoint(path, feature_runtime="torch").score(images)]

    def broken(self, size):
        raise RuntimeError("an operator the exporter does not know")

    monkeypatch.setattr(OnnxFeatures, "_build", broken)
    with pytest.warns(RuntimeWarning, match="could not run in onnxruntime.*an operator"):
        detector = Detector.from_checkpoint(path)
    assert detector.info()["feature_runtime"] == "torch"
    assert [d.score for d in detector.score(images)] == expected
    with pytest.raises(RuntimeError, match="an operator"):
        Detector.from_checkpoint(path, feature_runtime="onnxruntime")


def _gated_predict(model, inside: threading.Semaphore, gate: threading.Event):
    """model.predict that says when a call is in it and holds every call until `gate` opens."""
    real = model.predict

    def predict(*args, **kwargs):
        inside.release()
        assert gate.wait(10)
        return real(*args, **kwargs)

    return predict


def test_score_calls_run_side_by_side_and_absorb_waits_for_them_and_runs_alone(tmp_path, monkeypatch):
    """Scoring only reads the model, so two calls run at once; taking a part in changes the bank
    it reads, so it waits for every call in flight, and no call starts while it runs."""
    from helpers.serving import make_patchcore_checkpoint

    detector = Detector.from_checkpoint(make_patchcore_checkpoint(tmp_path / "final"), feature_runtime="torch")
    model = detector.checkpoint.model
    parts = [noisy_image(64, s) for s in range(3)]
    before = [d.score for d in detector.score(parts)]
    inside, gate = threading.Semaphore(0), threading.Event()
    monkeypatch.setattr(model, "predict", _gated_predict(model, inside, gate))
    scored: dict[int, float] = {}
    scorers = [threading.Thread(target=lambda i=i: scored.update({i: detector.score([parts[i]])[0].score}))
               for i in range(2)]
    for t in scorers:
        t.start()
    assert inside.acquire(timeout=10) and inside.acquire(timeout=10)  # both calls inside the model at once
    absorbed = threading.Event()
    absorber = threading.Thread(target=lambda: (detector.absorb([parts[2]]), absorbed.set()))
    absorber.start()
    assert not absorbed.wait(0.3)  # the two calls are still in the model: it waits
    assert wait_until(lambda: detector._lock._writers_waiting == 1)
    # asks while absorb waits: goes after it, not beside the two calls still inside
    late = threading.Thread(target=lambda: scored.update({2: detector.score([parts[2]])[0].score}))
    late.start()
    assert not inside.acquire(timeout=0.3)
    gate.set()
    for t in (*scorers, absorber, late):
        t.join(20)
    assert absorbed.is_set()
    np.testing.assert_allclose([scored[0], scored[1]], before[:2], rtol=1e-5)  # scored before the part came in
    assert scored[2] < before[2] - 1e-6  # scored after: the part it scores is now in the bank
