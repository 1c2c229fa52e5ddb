import pytest

from defectscope.config import load_config
from defectscope.models import create_model
from helpers.benchmarks import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs" / "vitae").glob("*.yaml"))


def test_the_shipped_configs():
    assert {p.stem for p in CONFIGS} == {"small", "small_mvtec", "paper"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_and_its_network_fits_its_image_size(path):
    cfg = load_config(path, [])
    assert cfg.model_name == "vitae" and cfg.model.memory and cfg.model.coord_attention
    if path.stem == "paper":  # the paper's section 4.2, on the model defaults
        m = cfg.model
        assert (cfg.data.image_size, m.patch_size, m.embed_dim, m.num_heads) == (384, 16, 768, 8)
        assert (cfg.train.lr, cfg.data.batch_size, cfg.train.epochs) == (2e-4, 8, 200)
        assert (m.recon_weight, m.entropy_weight) == (1.0, 0.001)
    else:
        model = create_model("vitae", cfg.model, cfg.data.image_size)
        assert model.network.encoder.grid == cfg.data.image_size // cfg.model.patch_size
