"""A model prepared for scoring (its features in onnxruntime) still exports its torch layers."""

import pytest

from defectscope.engine import load_checkpoint

pytest.importorskip("onnxruntime", reason="onnxruntime is optional (pip install 'defectscope[export]')")
pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript (pip install 'defectscope[export]')")


def test_a_prepared_patchcore_exports_its_backbone_not_a_session(tmp_path):
    import onnx

    from defectscope.export.onnx_graph import compare_with_torch, export_onnx
    from helpers.serving import make_patchcore_checkpoint

    checkpoint = load_checkpoint(make_patchcore_checkpoint(tmp_path / "final"))
    checkpoint.model.eval().prepare(onnxruntime_threads=1)
    assert checkpoint.model.feature_runtime == "onnxruntime"
    export_onnx(checkpoint, tmp_path / "model.onnx")
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert "Conv" in ops
    diff = compare_with_torch(checkpoint, tmp_path / "model.onnx")
    assert diff["max_score_diff"] <= 1e-3 * max(1.0, diff["max_abs_map"])
