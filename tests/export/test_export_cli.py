"""`defectscope export` writes a checked graph; `defectscope serve model.onnx` serves it with onnxruntime."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from defectscope.cli.main import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_export_verb_writes_next_to_the_checkpoint_and_refuses_to_overwrite(standardised, tmp_path, capsys):
    target = tmp_path / "out.onnx"
    assert main(["export", str(standardised.folder / "model.safetensors"), "--format", "onnx", "-o", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"{target}: ae_ssim" in out and "inputs images at 32 px, dynamic batch" in out
    assert "onnxruntime vs torch" in out
    assert main(["export", str(standardised.folder), "-o", str(target)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--opset", "17"], "the dynamo exporter writes opset 18 or newer"),
    (["--format", "tflite"], "invalid choice"),
])
def test_export_verb_refuses_bad_options(standardised, tmp_path, capsys, argv, message):
    try:
        code = main(["export", str(standardised.folder), "-o", str(tmp_path / "m.onnx"), *argv])
    except SystemExit as exit_:  # argparse's own refusal
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists() and list(tmp_path.iterdir()) == []  # no temporary file left


def test_export_verb_names_a_missing_checkpoint(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_serve_picks_the_onnx_runtime_for_an_onnx_file(standardised, monkeypatch):
    testclient = pytest.importorskip("fastapi.testclient")
    import uvicorn

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(app=app, **kwargs))
    assert main(["serve", str(standardised.path), "--port", "8123", "--threads", "1"]) == 0
    client = testclient.TestClient(started["app"])
    model = client.get("/model").json()
    assert model["model_name"] == "ae_ssim" and (model["backend"], model["threads"]) == ("onnxruntime", 1)
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(png, "PNG")
    answer = client.post("/predict", files={"file": ("part.png", png.getvalue(), "image/png")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["width"], body["height"]) == (30, 40) and body["verdict"] in ("OK", "DEFECT")
