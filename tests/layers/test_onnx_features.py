"""Features computed by onnxruntime for scoring: the torch features, any batch and size; torch wherever a
graph is traced or a gradient is wanted."""

import io
import warnings

import numpy as np
import pytest
import torch

from defectscope.layers.backbones import BackboneConfig, FrozenBackbone
from defectscope.layers.onnx_features import OnnxFeatures
from defectscope.layers.patch_features import PatchFeatures

pytest.importorskip("onnxruntime", reason="onnxruntime is optional (pip install 'defectscope[export]')")


def random_features(name: str = "mobilenet_v2") -> PatchFeatures:
    torch.manual_seed(0)
    return PatchFeatures(FrozenBackbone(BackboneConfig(name, pretrained=False), "middle")).eval()


@pytest.fixture(scope="module")
def features():
    return random_features()


def images(batch, height, width, seed=0):
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_onnxruntime_gives_the_torch_features_for_any_batch_and_size(name):
    """EfficientNet-Lite pads from the input's size ("same"): a graph traced at one size and run at another
    would give other features, so each size gets its own."""
    features = random_features(name)
    features.use_onnxruntime(1, (64, 64))
    for shape in [(1, 64, 64), (3, 64, 64), (2, 48, 80), (1, 96, 96)]:
        x = images(*shape)
        with torch.no_grad():
            got = features(x)
            features.onnx, kept = None, features.onnx
            expected = features(x)
            features.onnx = kept
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4 * float(expected.abs().max()), rtol=1e-4)
    assert sorted(features.onnx.sessions) == [(48, 80), (64, 64), (96, 96)]


def test_past_its_sizes_it_leaves_the_features_to_torch(features, monkeypatch):
    monkeypatch.setattr(OnnxFeatures, "MAX_SIZES", 1)
    features.use_onnxruntime(1, (64, 64))
    try:
        with torch.no_grad():
            other = features(images(1, 48, 48))
            features.onnx, kept = None, features.onnx
            assert torch.equal(other, features(images(1, 48, 48)))
            features.onnx = kept
        assert list(features.onnx.sessions) == [(64, 64)]
    finally:
        features.use_onnxruntime(None)


def test_it_is_used_and_switched_off(features, monkeypatch):
    calls = []
    features.use_onnxruntime(1)
    try:
        session = features.onnx.session((64, 64))
        run = session.run
        monkeypatch.setattr(session, "run", lambda *a, **k: calls.append(1) or run(*a, **k), raising=False)
        with torch.no_grad():
            features(images(1, 64, 64))
        assert calls == [1]
    finally:
        features.use_onnxruntime(None)
    assert features.onnx is None


def test_other_dtypes_get_torch(features, monkeypatch):
    """torch says what it says about a float64 image (onnxruntime would have cast it to float32)."""
    features.use_onnxruntime(1, (64, 64))
    try:
        calls = []
        monkeypatch.setattr(OnnxFeatures, "__call__", lambda self, x: calls.append(1))
        with torch.no_grad(), pytest.raises(RuntimeError):  # a float64 input to float32 weights
            features(images(1, 64, 64).double())
        assert calls == []
    finally:
        features.use_onnxruntime(None)


def test_a_gradient_or_a_trace_gets_torch(features):
    """An input that wants a gradient gets torch's features (onnxruntime has none); a module traced for export
    holds the backbone's layers, not a call into a session."""
    features.use_onnxruntime(1)
    try:
        x = images(1, 64, 64).requires_grad_()
        features(x).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter says it is the old one; the trace's shape notes
            torch.onnx.export(features, (images(1, 64, 64),), buffer, dynamo=False, opset_version=17)
    finally:
        features.use_onnxruntime(None)
    import onnx

    ops = {node.op_type for node in onnx.load_from_string(buffer.getvalue()).graph.node}
    assert "Conv" in ops


def test_a_session_is_its_own_copy_of_the_weights(features):
    """The session holds the weights as they were when it was made; preparing again takes the current ones."""
    fresh = random_features()
    x = images(1, 64, 64)
    fresh.use_onnxruntime(1)
    with torch.no_grad():
        before = fresh(x).numpy()
        for p in fresh.parameters():
            p.mul_(0.5)
        assert np.array_equal(fresh(x).numpy(), before)
        fresh.use_onnxruntime(1)
        assert not np.allclose(fresh(x).numpy(), before)
