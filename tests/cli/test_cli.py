import csv
import json
import shutil

import pytest

from defectscope.cli.main import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mtsd_root):
    """One tiny model trained through the CLI, shared by the verb tests."""
    from helpers.runs import tiny_config_text

    tmp = tmp_path_factory.mktemp("cli")
    config = tmp / "run.yaml"
    config.write_text(tiny_config_text(mtsd_root, tmp / "run", "ae_ssim", steps=2))
    assert main(["train", str(config), "--save-maps"]) == 0
    return tmp / "run"


def test_train_writes_results_and_maps(trained, capsys):
    results = json.loads((trained / "results.json").read_text())
    assert results["model"] == "ae_ssim" and "mtsd" in results["categories"]
    assert any(trained.joinpath("maps").glob("*.png"))
    assert (trained / "checkpoints" / "final" / "model.safetensors").is_file()


def test_test_verb_rescores_a_checkpoint(trained, tmp_path):
    assert main(["test", str(trained / "checkpoints" / "final"), "--output", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    original = json.loads((trained / "results.json").read_text())
    assert results["categories"] == original["categories"]


def test_predict_scores_files_and_folders(trained, tmp_path, mtsd_root):
    images = sorted((mtsd_root / "MT_Crack" / "Imgs").glob("*.jpg"))
    folder = tmp_path / "incoming" / "nested"
    folder.mkdir(parents=True)
    for image in sorted((mtsd_root / "MT_Free" / "Imgs").glob("*.jpg"))[:3]:
        shutil.copy(image, folder / image.name)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "pred"
    assert main(["predict", str(trained / "checkpoints" / "final"), str(images[0]),
                 str(tmp_path / "incoming"), "--output", str(out)]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == 4
    assert all(float(r["score"]) >= 0 for r in rows)
    assert len(list((out / "maps").rglob("*.png"))) == len(rows)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--train.epochz", "3"], "train.epochz"),
        (["--model.name", "nope"], "nope"),
        (["--data.sources", "[{layout: mtsd, root: /does/not/exist}]"], "/does/not/exist"),
    ],
)
def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path, mtsd_root, capsys, args, needle):
    from helpers.runs import tiny_config_text

    config = tmp_path / "run.yaml"
    config.write_text(tiny_config_text(mtsd_root, tmp_path / "run", "ae_ssim", steps=1))
    assert main(["train", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_test_verb_applies_scoring_overrides_to_the_trained_weights(trained, tmp_path, capsys):
    ckpt = str(trained / "checkpoints" / "final")
    assert main(["test", ckpt, "--output", str(tmp_path / "a"), "--model.smoothing_sigma", "0"]) == 0
    sharp = json.loads((tmp_path / "a" / "results.json").read_text())
    original = json.loads((trained / "results.json").read_text())
    assert sharp["categories"] != original["categories"]
    assert sharp["calibration"]["image"]["threshold"] != original["calibration"]["image"]["threshold"]
    assert main(["test", ckpt, "--output", str(tmp_path / "b"), "--model.latent_dim", "3"]) == 2
    assert "change the network" in capsys.readouterr().err
    assert main(["test", ckpt]) == 0
    assert (trained / "test" / "results.json").is_file()


def test_test_verb_fits_a_map_standardiser_for_old_weights(trained, tmp_path, capsys):
    ckpt = str(trained / "checkpoints" / "final")
    assert main(["test", ckpt, "--output", str(tmp_path / "z"), "--eval.map_standardization", "position",
                 "--data.validation_fraction", "0"]) == 2
    assert "at least 2 held-out normal images" in capsys.readouterr().err
    assert main(["test", ckpt, "--output", str(tmp_path / "z"), "--eval.map_standardization", "position",
                 "--data.validation_fraction", "0.5"]) == 0
    results = json.loads((tmp_path / "z" / "results.json").read_text())
    assert results["map_standardization"] == "position"
    assert results["calibration"]["image"]["threshold"]["n"] >= 2


def test_missing_checkpoint_and_missing_image_are_named(tmp_path, trained, capsys):
    assert main(["test", str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert main(["predict", str(trained / "checkpoints" / "final"), str(tmp_path / "x.png")]) == 2
    assert "x.png" in capsys.readouterr().err


def test_demo_runs_end_to_end_on_the_shipped_data(tmp_path, capsys):
    """The README's first command at 64 px: the model, then the no-training line beside it."""
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--data.image_size", "64", "--train.progress", "false"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_test_images"] == 90 and "mtsd" in results["categories"]
    assert len(results["intervals"]["mtsd"]["image_auroc"]) == 2
    printed = capsys.readouterr().out
    assert str(out / "results.md") in printed and "no-training mean image" in printed
    assert json.loads((out / "baseline" / "results.json").read_text())["model"] == "mean_image"
    assert main(["demo", "--output", str(out), "--no-baseline"]) == 2  # a finished demo is not replaced


def test_pvqae_scores_in_perceptual_space_with_a_backbone_read_from_its_file(tmp_path, mtsd_root, capsys):
    """Weights trained without the perceptual backbone: `test` reads it from the named file."""
    import torch
    from safetensors.torch import save_file

    from defectscope.layers.backbones.mobilenetv2 import MobileNetV2Features
    from helpers.runs import tiny_config_text

    torch.manual_seed(0)
    weights = tmp_path / "mobilenet.safetensors"
    save_file(MobileNetV2Features(last=3).state_dict(), str(weights))
    config = tmp_path / "run.yaml"
    config.write_text(tiny_config_text(mtsd_root, tmp_path / "run", "pvqae", steps=2))
    assert main(["train", str(config)]) == 0
    ckpt = str(tmp_path / "run" / "checkpoints" / "final")
    scoring = ["--model.target.rec_distance", "perceptual", "--model.target.backbone.taps", "[1, 3]",
               "--model.target.backbone.sha256", "''"]
    absent = tmp_path / "absent.safetensors"
    assert main(["test", ckpt, *scoring, "--model.target.backbone.path", str(absent),
                 "--output", str(tmp_path / "x")]) == 2
    assert str(absent) in capsys.readouterr().err
    assert main(["test", ckpt, *scoring, "--model.target.backbone.path", str(weights),
                 "--output", str(tmp_path / "p")]) == 0
    pixel = json.loads((tmp_path / "run" / "results.json").read_text())["categories"]["mtsd"]
    perceptual = json.loads((tmp_path / "p" / "results.json").read_text())["categories"]["mtsd"]
    assert perceptual["pixel_auroc"] != pixel["pixel_auroc"]


def test_pvqae_on_features_keeps_its_backbone_in_the_checkpoint(tmp_path, mtsd_root, capsys):
    """Trained with the backbone read from a file; `test` from the checkpoint needs no file."""
    import torch
    from safetensors.torch import save_file

    from defectscope.layers.backbones.mobilenetv2 import MobileNetV2Features
    from helpers.runs import tiny_config_text

    torch.manual_seed(0)
    weights = tmp_path / "mobilenet.safetensors"
    save_file(MobileNetV2Features(last=6).state_dict(), str(weights))
    config = tmp_path / "run.yaml"
    config.write_text(tiny_config_text(mtsd_root, tmp_path / "run", "pvqae", steps=2).replace(
        "channel_mult: [1, 1, 2, 2], res_blocks: [1, 1, 1, 1]",
        f"channel_mult: [1, 2, 2], res_blocks: [1, 1, 1], "
        f"target: {{kind: features, backbone: {{taps: [3, 6], sha256: '', path: '{weights}'}}}}").replace(
        "adversarial: {kind: patchgan, channels: 8, layers: 2, start: 0}", "adversarial: none"))
    assert main(["train", str(config)]) == 0
    trained = json.loads((tmp_path / "run" / "results.json").read_text())["categories"]["mtsd"]
    weights.unlink()
    assert main(["test", str(tmp_path / "run" / "checkpoints" / "final"), "--output", str(tmp_path / "t")]) == 0
    again = json.loads((tmp_path / "t" / "results.json").read_text())["categories"]["mtsd"]
    assert again["pixel_auroc"] == pytest.approx(trained["pixel_auroc"])


def test_test_verb_sets_thresholds_again_at_another_false_alarm_rate(trained, tmp_path):
    """From the held-out scores stored in the checkpoint: nothing is re-scored, the held-out set is the same."""
    from defectscope.engine.checkpoint import load_checkpoint
    from defectscope.scoring.calibration import conformal_threshold

    ckpt = str(trained / "checkpoints" / "final")
    assert main(["test", ckpt, "--output", str(tmp_path), "--eval.false_alarm_rate", "0.5"]) == 0
    threshold = json.loads((tmp_path / "results.json").read_text())["calibration"]["image"]["threshold"]
    stored = load_checkpoint(ckpt).calibration.image.held_out.scores
    assert threshold == conformal_threshold(stored, 0.5).to_dict() and threshold["false_alarm_rate"] == 0.5
