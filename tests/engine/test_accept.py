"""`accept`: good parts a model flagged join its fit without refitting; the checkpoint is written again.

Models on randomly initialised backbones at 64 px (no weights to install): what is tested is that an
accepted part, and a near copy of it, now read as normal, that the statistics are the ones a refit
would give, and that the checkpoint round-trips with its digests; not the accuracy.
"""

from __future__ import annotations

import pytest
import torch

from defectscope.config import ConfigError, load_config
from defectscope.data.dataset import build_records, dataset_of
from defectscope.engine import run as run_engine
from defectscope.engine.accept import accept
from defectscope.engine.checkpoint import load_checkpoint, save_checkpoint
from defectscope.engine.inference import viewing_of
from defectscope.engine.predictions import predict_dataset
from defectscope.layers.backbones import BackboneConfig
from defectscope.models import create_model
from defectscope.models.mean_image.config import MeanImageConfig
from defectscope.models.mean_image.model import MeanImage
from defectscope.models.padim.config import PaDiMConfig
from defectscope.models.padim.gaussian import PositionGaussians
from defectscope.models.padim.model import PaDiM
from defectscope.models.patchcore.config import PatchCoreConfig
from defectscope.models.patchcore.model import PatchCore
from helpers.runs import tiny_config_text

RANDOM_MOBILENET = BackboneConfig("mobilenet_v2", pretrained=False)


def stripes(n: int, seed: int) -> torch.Tensor:
    """n normal images alike but not equal: a stripe pattern with a little noise, (n, 3, 64, 64)."""
    g = torch.Generator().manual_seed(seed)
    _, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    return (0.5 + 0.2 * torch.sin(x / 3) + 0.05 * torch.randn(n, 3, 64, 64, generator=g)).clamp(0, 1)


def with_square(images: torch.Tensor) -> torch.Tensor:
    """A good part that looks unlike the training ones (a bright square): what the model flags."""
    out = images.clone()
    out[:, :, 20:36, 20:36] = 1.0
    return out


def near_copy(images: torch.Tensor) -> torch.Tensor:
    return (images + 0.01 * torch.randn(images.shape, generator=torch.Generator().manual_seed(9))).clamp(0, 1)


def fitted(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    (phase,) = model.phases()
    ids = torch.zeros(len(images), dtype=torch.long)
    for start in range(0, len(images), 4):
        model.collect(images[start : start + 4], ids[start : start + 4], phase.name)
    model.finish_collection(phase.name)
    return model.eval()


def scores(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model.predict(images, torch.zeros(len(images), dtype=torch.long)).image_score


ZEROS = torch.zeros(1, dtype=torch.long)


# --- the models ------------------------------------------------------------------------------


def test_patchcore_scores_an_accepted_part_and_a_near_copy_within_the_normal_range():
    torch.manual_seed(0)
    model = fitted(PatchCore(PatchCoreConfig(backbone=RANDOM_MOBILENET, coreset_ratio=0.25), 64), stripes(8, 0))
    normal = scores(model, stripes(6, 1))  # good parts the bank never saw: its normal range
    part = with_square(stripes(1, 2))
    assert scores(model, part).item() > normal.max().item()  # flagged before
    bank = len(model.memory.bank)
    changes = model.absorb(part, ZEROS)
    assert changes == {"bank_size": (bank, bank + 8 * 8)}  # every patch of the part (stride 8 at 64 px), no coreset
    assert scores(model, part).item() <= 0.05 * normal.min().item()  # ≈ 0: its own patches are in the bank
    assert scores(model, near_copy(part)).item() <= normal.min().item()
    assert (scores(model, stripes(6, 1)) <= normal * 1.001).all()  # parts like the held-out ones score no higher


def test_padim_absorb_gives_the_gaussians_a_refit_on_every_sample_gives():
    g = torch.Generator().manual_seed(0)
    positions, dim = 3, 4
    mixing = torch.randn(positions, dim, dim, generator=g)
    x = torch.einsum("npd,pde->npe", torch.randn(40, positions, dim, generator=g), mixing) + 5.0
    refit, part = PositionGaussians(positions, dim, 0.01), PositionGaussians(positions, dim, 0.01)
    refit.add(x)
    refit.finish()
    part.add(x[:33])
    part.finish()
    part.absorb(x[33:36])  # in two calls, as the engine's batches come
    part.absorb(x[36:])
    assert int(part.samples) == int(refit.samples) == 40
    assert torch.allclose(part.mean, refit.mean, atol=1e-5)
    assert torch.allclose(part.inv_cov, refit.inv_cov, rtol=1e-3, atol=1e-4)


def test_padim_scores_an_accepted_part_lower_and_keeps_n():
    torch.manual_seed(0)
    model = fitted(PaDiM(PaDiMConfig(backbone=RANDOM_MOBILENET, n_features=32), 64), stripes(16, 0))
    part = with_square(stripes(1, 2))
    before, copy_before = scores(model, part).item(), scores(model, near_copy(part)).item()
    assert model.absorb(part, ZEROS) == {"samples": (16.0, 17.0)}
    assert scores(model, part).item() < before and scores(model, near_copy(part)).item() < copy_before
    assert int(model.state_dict()["gaussians.samples"]) == 17


def test_a_padim_saved_before_n_was_kept_loads_but_refuses_to_absorb():
    model = fitted(PaDiM(PaDiMConfig(backbone=RANDOM_MOBILENET, n_features=8), 64), stripes(4, 0))
    old = {k: v for k, v in model.state_dict().items() if k != "gaussians.samples"}
    again = PaDiM(PaDiMConfig(backbone=RANDOM_MOBILENET, n_features=8), 64)
    missing, unexpected = again.load_state_dict(old, strict=False)
    assert not missing and not unexpected
    assert torch.equal(again.gaussians.inv_cov, model.gaussians.inv_cov)
    with pytest.raises(RuntimeError, match="^padim: .*do not record how many samples"):
        again.absorb(stripes(1, 1), ZEROS)


def test_mean_image_absorb_gives_its_class_the_statistics_of_a_refit():
    images, ids = stripes(10, 0), torch.tensor([0, 1] * 5)
    config = MeanImageConfig(smoothing_sigma=0.0)
    model, refit = MeanImage(config, 64, num_classes=2), MeanImage(config, 64, num_classes=2)
    model.collect(images[:8], ids[:8], "statistics")
    model.finish_collection("statistics")
    part = with_square(images[8:9])
    before = scores(model, part).item()
    kept = model.std > config.std_floor  # where σ sat at the floor, the variance below it was not kept
    assert model.absorb(part, torch.tensor([0])) == {"images": (8.0, 9.0)}
    refit.collect(torch.cat([images[:8], part]), torch.cat([ids[:8], torch.tensor([0])]), "statistics")
    refit.finish_collection("statistics")
    assert model.count.tolist() == refit.count.tolist() == [5, 4]
    assert torch.allclose(model.mean, refit.mean, atol=1e-6)
    assert torch.allclose(model.std[kept], refit.std[kept], rtol=1e-5)
    assert ((model.std - refit.std).abs() <= config.std_floor).all()  # elsewhere the floor bounds the error
    assert scores(model, part).item() < before
    assert scores(model, near_copy(part)).item() < before


# --- the engine ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mtsd_root):
    """Tiny runs on the synthetic MTSD tree: PatchCore calibrated on a hold-out, PaDiM cross-fitted."""
    root = tmp_path_factory.mktemp("accept")
    texts = {"patchcore": tiny_config_text(mtsd_root, root / "patchcore", "patchcore").replace(
                 "data:\n", "data:\n  validation_fraction: 0.3\n", 1),
             "padim": tiny_config_text(mtsd_root, root / "padim", "padim") + "eval: {calibration: {kind: cross_fit, "
                                                                              "folds: 2}}\n"}
    made = {}
    for name, text in texts.items():
        (root / f"{name}.yaml").write_text(text)
        made[name] = run_engine(load_config(root / f"{name}.yaml", []), evaluate_test=False).checkpoint
    return made


def flagged_parts(mtsd_root, n=2):
    return sorted((mtsd_root / "MT_Blowhole" / "Imgs").glob("*.jpg"))[:n]


def test_accept_writes_a_checkpoint_that_round_trips_with_its_digests(runs, mtsd_root, tmp_path):
    old = load_checkpoint(runs["patchcore"])
    done = accept(runs["patchcore"], flagged_parts(mtsd_root), output=tmp_path / "accepted")
    new = load_checkpoint(tmp_path / "accepted")  # every tensor and metadata digest checked on load
    added = len(new.model.memory.bank) - len(old.model.memory.bank)
    assert added > 0 and done.changes["bank_size"] == (len(old.model.memory.bank), len(new.model.memory.bank))
    assert new.calibration == old.calibration == done.new  # kept: the held-out scores are other parts'
    assert new.config == old.config and new.class_names == old.class_names and new.step == old.step
    assert (done.scores_after <= done.scores_before).all()
    assert (done.scores_after <= old.calibration.image.threshold.value).all()
    assert len(load_checkpoint(runs["patchcore"]).model.memory.bank) == len(old.model.memory.bank)  # run untouched


def test_accept_in_place_replaces_the_runs_checkpoint(runs, mtsd_root, tmp_path):
    first = accept(runs["patchcore"], flagged_parts(mtsd_root, 1), output=tmp_path / "copy")
    copy = tmp_path / "copy"
    done = accept(copy, flagged_parts(mtsd_root, 3)[1:])
    assert done.target == copy and done.changes["bank_size"][0] == first.changes["bank_size"][1]
    assert len(load_checkpoint(copy).model.memory.bank) == done.changes["bank_size"][1]
    assert done.kept == tmp_path / "copy.before-accept-1"  # the checkpoint as it was, to go back to
    assert len(load_checkpoint(done.kept).model.memory.bank) == first.changes["bank_size"][1]
    again = accept(copy, flagged_parts(mtsd_root, 1))
    assert again.kept == tmp_path / "copy.before-accept-2" and done.kept.exists()  # never over an earlier one


def test_accept_refuses_an_output_that_exists(runs, mtsd_root, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        accept(runs["patchcore"], flagged_parts(mtsd_root, 1), output=tmp_path / "taken")
    assert list((tmp_path / "taken").iterdir()) == []


def test_rescore_sets_the_threshold_from_the_hold_out_scored_by_the_updated_model(runs, mtsd_root, tmp_path):
    done = accept(runs["patchcore"], flagged_parts(mtsd_root), output=tmp_path / "r", rescore=True)
    new = load_checkpoint(tmp_path / "r")
    assert done.rescored and new.calibration == done.new
    assert new.calibration.image.threshold.n == done.old.image.threshold.n  # the same held-out images
    held_out = build_records(new.config.data).validation
    again = predict_dataset(new.model, dataset_of(held_out, new.config.data, {"mtsd": 0}), 8, torch.device("cpu"),
                            keep_maps=False, viewing=viewing_of(new.config.data))
    assert sorted(new.calibration.image.held_out.scores) == pytest.approx(sorted(again.image_scores.tolist()))


def test_a_cross_fitted_run_accepts_but_cannot_rescore(runs, mtsd_root, tmp_path):
    with pytest.raises(ConfigError, match="cross-fitted"):
        accept(runs["padim"], flagged_parts(mtsd_root), output=tmp_path / "no", rescore=True)
    assert not (tmp_path / "no").exists()
    done = accept(runs["padim"], flagged_parts(mtsd_root), output=tmp_path / "yes")
    assert done.changes["samples"][1] == done.changes["samples"][0] + 2


def test_a_trained_network_is_refused_naming_why(tmp_path, mtsd_root):
    cfg = load_config(None, ["--model.name", "vq_e", "--model.hidden_channels", "16", "--model.num_codes", "16",
                             "--model.code_dim", "8", "--data.image_size", "32",
                             "--data.sources", f"[{{layout: mtsd, root: '{mtsd_root}'}}]"])
    save_checkpoint(tmp_path / "vq_e", create_model("vq_e", cfg.model, 32, 1), cfg, ["mtsd"])
    with pytest.raises(ConfigError, match="vq_e is a trained network .* train it again"):
        accept(tmp_path / "vq_e", flagged_parts(mtsd_root, 1))


def test_the_class_must_be_named_on_a_model_with_several(tmp_path, mvtec_root):
    cfg = load_config(None, ["--model.name", "mean_image", "--data.image_size", "32", "--data.sources",
                             f"[{{layout: mvtec, root: '{mvtec_root}', category: widget}}, "
                             f"{{layout: mvtec, root: '{mvtec_root}', category: gadget}}]"])
    model = create_model("mean_image", cfg.model, 32, 2)
    model.collect(torch.rand(4, 3, 32, 32), torch.tensor([0, 0, 1, 1]), "statistics")
    model.finish_collection("statistics")
    save_checkpoint(tmp_path / "two", model, cfg, ["widget", "gadget"])
    part = next((mvtec_root / "gadget" / "test" / "good").glob("*.png"))
    with pytest.raises(ConfigError, match="several classes .* --class-name"):
        accept(tmp_path / "two", [part])
    with pytest.raises(ConfigError, match="'c' is not one of"):
        accept(tmp_path / "two", [part], class_name="c")
    done = accept(tmp_path / "two", [part], class_name="gadget", output=tmp_path / "b")
    assert load_checkpoint(tmp_path / "b").model.count.tolist() == [2, 3] and done.changes == {"images": (4.0, 5.0)}
