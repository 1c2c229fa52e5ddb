"""Tiny training configs on the synthetic MTSD tree, for engine and CLI tests."""

import pytest

from defectscope.config import load_config


def tiny_config_text(root, out, model="vq_e", steps=3, extra=""):
    models = {
        "vq_e": "{name: vq_e, hidden_channels: 16, num_codes: 16, code_dim: 8, downsample: 4}",
        "ae_ssim": "{name: ae_ssim, base_channels: 8, latent_dim: 16}",
        "patchcore": "{name: patchcore, backbone: {pretrained: false}, coreset_chunk: 200}",
        "padim": "{name: padim, backbone: {pretrained: false}, n_features: 16}",
        "mean_image": "{name: mean_image}",
        "pvqae": "{name: pvqae, channels: 8, channel_mult: [1, 1, 2, 2], res_blocks: [1, 1, 1, 1], num_codes: 16, "
                 "code_dim: 8, router_hidden: 8, adversarial: {kind: patchgan, channels: 8, layers: 2, start: 0}, "
                 "prior: {kind: per_class, dim: 16, heads: 2, epochs: 1}}",
    }
    return f"""
model: {models[model]}
data:
  sources: [{{layout: mtsd, root: '{root}'}}]
  image_size: 32
  batch_size: 4
  eval_batch_size: 8
train:
  epochs: 50
  max_steps: {steps}
  log_every: 1
  progress: false
  accelerator: cpu
output_dir: '{out}'
{extra}
"""


@pytest.fixture
def tiny_config_file(tmp_path, mtsd_root):
    def make(model="vq_e", steps=3, extra="", name="run"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(tiny_config_text(mtsd_root, tmp_path / name, model, steps, extra))
        return path

    return make


@pytest.fixture
def tiny_config(tiny_config_file):
    def make(model="vq_e", steps=3, overrides=(), name="run"):
        return load_config(tiny_config_file(model, steps, name=name), list(overrides))

    return make


def demo_good_folder(folder, count=100):
    """`count` good demo tiles in `folder`: 100 are enough that 10 are held out, the fewest
    `fit --features auto` chooses from."""
    import shutil

    from helpers.serving import REPO_ROOT

    for path in sorted((REPO_ROOT / "demo" / "mtsd_demo" / "MT_Free" / "Imgs").glob("*.jpg"))[:count]:
        shutil.copy(path, folder)
    return folder
