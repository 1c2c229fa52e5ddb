import pytest

from defectscope.config import ConfigError, load_config
from defectscope.layers.backbones import BackboneConfig
from defectscope.models import create_model
from defectscope.models.pvqae.config import (
    DetailRichness,
    FeatureTarget,
    ImageTarget,
    NoDiscriminator,
    NoPrior,
    PatchGAN,
    PVQAEConfig,
    RouteThenQuantize,
    UniversalPrior,
)
from helpers.benchmarks import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs" / "pvqae").glob("*.yaml"))


def test_the_shipped_configs():
    assert {p.stem for p in CONFIGS} == {
        "small", "small_mvtec", "small_features", "small_features_mvtec", "small_features_fine", "paper",
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_and_builds_without_reading_weights(path):
    cfg = load_config(path, [])
    assert cfg.model_name == "pvqae"
    model = create_model("pvqae", cfg.model, cfg.data.image_size)
    if path.stem == "paper":  # the paper's λ_max, VQ-GAN's perceptual weight and its discriminator
        assert (cfg.model.lambda_max, cfg.model.target.perceptual_weight) == (1.25, 1.0)
        assert model.perceptual is not None and not model.perceptual.net.loaded  # read at the first step
        assert isinstance(cfg.model.adversarial, PatchGAN) and model.discriminator is not None
    else:  # the CPU configs train without a perceptual term and without a discriminator
        assert model.perceptual is None
        assert isinstance(cfg.model.adversarial, NoDiscriminator) and model.discriminator is None
    if path.stem.startswith("small_features"):  # rebuild the backbone's features, read at the first step
        assert model.features is not None and not model.features.backbone.loaded
        assert model.coarse_grid == (8, 8)  # the same 8×8 budget grid as the image configs at 256 px
        assert model.features.grid(cfg.data.image_size) == (64 if path.stem.endswith("fine") else 32)
    else:
        assert model.features is None and cfg.model.target.perceptual_weight == (1.0 if path.stem == "paper" else 0)


def test_settings_that_do_not_fit_the_network_or_the_backbone_name_the_key():
    with pytest.raises(ValueError, match=r"model\.target\.backbone\.taps"):
        create_model("pvqae", PVQAEConfig(target=ImageTarget(perceptual_weight=1.0,
                                                            backbone=BackboneConfig(taps=(20,)))), 256)
    with pytest.raises(ValueError, match="pvqae.*divisible"):
        create_model("pvqae", PVQAEConfig(), 100)


def build(*overrides: str):
    return load_config(None, ["--model.name", "pvqae", *overrides]).model


def test_exclusive_choices_are_one_key_each():
    cfg = build("--model.target", "features", "--model.routing", "route_then_quantize", "--model.prior", "none",
                "--model.adversarial", "none", "--model.budget_richness.kind", "detail")
    assert isinstance(cfg.target, FeatureTarget) and isinstance(cfg.routing, RouteThenQuantize)
    assert isinstance(cfg.prior, NoPrior) and isinstance(cfg.adversarial, NoDiscriminator)
    assert cfg.budget_richness == DetailRichness()
    cfg = build("--model.target.kind", "features", "--model.target.jitter", "20", "--model.target.backbone.taps",
                "[3, 6]", "--model.prior.kind", "universal", "--model.prior.dim", "64")
    assert cfg.target == FeatureTarget(backbone=BackboneConfig(taps=(3, 6)), jitter=20.0)
    assert cfg.prior == UniversalPrior(dim=64)
    assert PVQAEConfig().target == ImageTarget() and PVQAEConfig().adversarial == PatchGAN()  # the paper's


@pytest.mark.parametrize("overrides, key, chosen", [
    (["--model.target.kind", "features", "--model.target.perceptual_weight", "1"],
     "model.target.perceptual_weight", "model.target.kind: features"),
    (["--model.target.kind", "features", "--model.target.rec_distance", "perceptual"],
     "model.target.rec_distance", "model.target.kind: features"),
    (["--model.target.jitter", "20"], "model.target.jitter", "model.target.kind: image"),
    (["--model.budget_richness.kind", "detail", "--model.budget_richness.dwt_levels", "2"],
     "model.budget_richness.dwt_levels", "model.budget_richness.kind: detail"),
    (["--model.routing.kind", "route_then_quantize", "--model.routing.shared_codebook", "true"],
     "model.routing.shared_codebook", "model.routing.kind: route_then_quantize"),
    (["--model.routing.kind", "route_then_quantize", "--model.routing.level_rec_weight", "1"],
     "model.routing.level_rec_weight", "model.routing.kind: route_then_quantize"),
    (["--model.adversarial.kind", "none", "--model.adversarial.start", "100"],
     "model.adversarial.start", "model.adversarial.kind: none"),
    (["--model.prior.kind", "none", "--model.prior.score", "rec"], "model.prior.score", "model.prior.kind: none"),
])
def test_a_setting_of_an_option_not_chosen_is_an_error_naming_both_keys(overrides, key, chosen):
    with pytest.raises(ConfigError) as err:
        build(*overrides)
    assert f"'{key}'" in str(err.value) and f"'{chosen}'" in str(err.value)


def test_an_exclusive_setting_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: pvqae\n  target: {kind: features, perceptual_weight: 1.0}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: 'model\.target\.perceptual_weight' does not apply with "
                                          r"'model\.target\.kind: features'"):
        load_config(path, [])


@pytest.mark.parametrize("key, value", [
    ("num_codes", "0"), ("channels", "-8"), ("channel_mult", "[1, 0, 2]"), ("res_blocks", "[1, -1]"),
    ("ema_decay", "1.5"), ("tau_end", "0"), ("lambda_max", "-1"), ("topk", "2"), ("smoothing_sigma", "-1"),
    ("target.perceptual_weight", "-1"), ("budget_richness.floor", "0"), ("budget_richness.dwt_levels", "-1"),
    ("prior.mask_ratio", "0"), ("prior.epochs", "0"), ("adversarial.start", "-1"), ("adversarial.channels", "0"),
    ("routing.level_rec_weight", "-0.5"),
])
def test_a_number_out_of_range_is_an_error_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"'model\.{key}(\[\d\])?' must be"):
        build(f"--model.{key}", value)
    with pytest.raises(ConfigError, match=r"'model\.target\.jitter' must be ≥ 0"):
        build("--model.target.kind", "features", "--model.target.jitter", "-1")
