import pytest

from defectscope.config import load_config
from defectscope.models import create_model
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
    if path.stem == "paper":  # the paper's λ_max and VQ-GAN's perceptual weight
        assert (cfg.model.lambda_max, cfg.model.perceptual_weight) == (1.25, 1.0)
        assert model.perceptual is not None and not model.perceptual.net.loaded  # read at the first step
    else:  # the CPU configs train without a perceptual term
        assert cfg.model.perceptual_weight == 0 and model.perceptual is None
    if path.stem.startswith("small_features"):  # rebuild the backbone's features, read at the first step
        assert model.features is not None and not model.features.backbone.loaded
        assert model.coarse_grid == (8, 8)  # the same 8×8 budget grid as the image configs at 256 px
        assert model.features.grid(cfg.data.image_size) == (64 if path.stem.endswith("fine") else 32)
    else:
        assert model.features is None


def test_settings_that_do_not_fit_are_a_config_error_naming_the_model():
    from defectscope.config import ConfigError
    from defectscope.models.pvqae.config import PVQAEConfig

    with pytest.raises(ConfigError, match="pvqae.*taps"):
        create_model("pvqae", PVQAEConfig(perceptual_weight=1.0, perceptual_taps=(20,)), 256)
    with pytest.raises(ConfigError, match="pvqae.*divisible"):
        create_model("pvqae", PVQAEConfig(), 100)
    with pytest.raises(ConfigError, match="pvqae.*rebuilds no image"):
        create_model("pvqae", PVQAEConfig(target="features", rec_distance="perceptual"), 256)
