"""The FADeR model: phases, groups, frozen encoder, switches, mask sources, DINO loading, a fit."""

import dataclasses
import json

import pytest
import torch

from defectscope.config import ConfigError, load_config
from defectscope.engine import run
from defectscope.models import create_model
from defectscope.models.base import StepContext
from defectscope.models.fader.config import (
    DinoMask,
    FADeRConfig,
    GridMask,
    HardAttenuation,
    MLPFader,
    NoBinaryMask,
    NoFader,
    ReconstructionMask,
    SaliencyMask,
    ViTFader,
)
from defectscope.models.fader.masks import DinoAttentionSource, load_dino, sha256_of

SIZE = 64
STAGE = MLPFader(hidden=16, rank_pairs=64)
TINY = FADeRConfig(channels=(4, 8, 8, 8, 8), fader=STAGE, mean_filter=5)


def model(stage=None, **changes):
    """A tiny FADeR; `stage` holds changes to the FADeR stage's settings."""
    torch.manual_seed(0)
    fader = dataclasses.replace(STAGE, **stage) if stage else changes.pop("fader", STAGE)
    return create_model("fader", dataclasses.replace(TINY, fader=fader, **changes), SIZE)


def images(n=2, seed=0):
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_phases_groups_and_decoder_lr_scale():
    m = model(inpaint_epochs=3, stage=dict(epochs=2, lr=1e-4))
    assert [(p.name, p.epochs, p.lr) for p in m.phases()] == [("main", 3, None), ("fader", 2, 1e-4)]
    groups = m.optimizer_groups("fader")
    assert list(groups) == ["fader", "decoder"]
    assert {id(p) for p in groups["decoder"].params} == {id(p) for p in m.unet.decoder.parameters()}
    assert groups["decoder"].lr_scale == 0.1 and groups["fader"].lr_scale == 1.0
    assert m.phases()[1].frozen == ("unet.encoder",)
    off = model(fader=NoFader())
    assert [p.name for p in off.phases()] == ["main"] and off.predictor is None


def test_fader_phase_trains_the_predictor_and_decoder_but_not_the_encoder():
    m = model()
    m.train()
    for name in m.phases()[1].frozen:  # the phase declares them frozen; the engine keeps them in eval mode
        m.get_submodule(name).eval()
    m.start_phase("fader")
    enc_before = {k: v.clone() for k, v in m.unet.encoder.state_dict().items()}
    x = images()
    opts = {g: torch.optim.SGD(group.params, lr=0.1) for g, group in m.optimizer_groups("fader").items()}
    dec_before = [p.clone() for p in m.unet.decoder.parameters()]
    handoff, metrics = {}, {}
    for group, opt in opts.items():
        opt.zero_grad()
        ctx = StepContext(0, phase="fader", group=group, handoff=handoff)
        parts = m.training_step(x, torch.zeros(2, dtype=torch.long), ctx)
        handoff, metrics = {**handoff, **parts.handoff}, {**metrics, **parts.metrics}
        parts.total.backward()
        assert all(p.grad is not None for p in m.optimizer_groups("fader")[group].params)
        opt.step()
    assert "pair_accuracy" in metrics
    for k, v in m.unet.encoder.state_dict().items():  # weights and BN running statistics
        assert torch.equal(v, enc_before[k]), k
    assert any(not torch.equal(a, b) for a, b in zip(dec_before, m.unet.decoder.parameters(), strict=True))


def test_fader_inference_switch_changes_the_map_on_the_same_weights():
    m = model()
    m.eval()
    x = images()
    on = m.predict(x).anomaly_map
    off = create_model("fader", dataclasses.replace(m.config, fader=dataclasses.replace(STAGE, at_inference=False)),
                       SIZE)
    off.load_state_dict(m.state_dict())
    off.eval()
    assert not torch.allclose(on, off.predict(x).anomaly_map)
    assert torch.allclose(m.explain(x).plain, off.explain(x).reconstruction)


@pytest.mark.parametrize(
    "changes",
    [
        {"stage": {"attenuation": HardAttenuation(threshold=0.3)}},
        {"stage": {"mask_scaling": "bilinear"}},
        {"fader": ViTFader(dim=16, heads=2, depth=1, rank_pairs=64)},
        {"stage": {"predictor_input": "input"}},
        {"mask": ReconstructionMask()},
        {"mask": GridMask()},
        {"mask": NoBinaryMask()},
        {"train_random_mask_ratio": 0.2},
        {"msgms_weight": 0.0},
        {"fader": NoFader()},
    ],
)
def test_variants_train_and_score(changes):
    m = model(**changes)
    x = images()
    for phase in m.phases():
        for group in m.optimizer_groups(phase.name):
            ctx = StepContext(0, phase=phase.name, group=group)
            assert torch.isfinite(m.training_step(x, torch.zeros(2, dtype=torch.long), ctx).total)
    m.eval()
    out = m.predict(x)
    assert out.anomaly_map.shape == (2, SIZE, SIZE) and torch.isfinite(out.image_score).all()


def test_mask_sources_give_the_configured_share():
    x = images()
    for source, share in [(SaliencyMask(ratio=0.25), 0.25), (GridMask(ratio=0.25), 0.25), (NoBinaryMask(), 0.0),
                          (ReconstructionMask(ratio=0.25), 0.25)]:
        m = model(mask=source)
        m.eval()
        mask = m.binary_mask(x)
        assert mask.shape == (2, 1, 8, 8)
        assert mask.mean().item() == pytest.approx(share), source


def test_reconstruction_source_leaves_batch_norm_statistics_alone():
    m = model(mask=ReconstructionMask())
    m.train()
    before = m.unet.encoder.blocks[0][1].running_mean.clone()
    m.binary_mask(images())
    assert torch.equal(before, m.unet.encoder.blocks[0][1].running_mean)


def test_explain_maps_are_pixel_sized():
    m = model()
    m.eval()
    maps = m.explain_maps(images())
    assert set(maps) == {"binary mask", "FADeR mask", "L2 error"}
    assert all(v.shape == (2, SIZE, SIZE) for v in maps.values())
    assert maps["FADeR mask"].min() >= 0 and maps["FADeR mask"].max() <= 1


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="divisible by the mosaic scale"):
        create_model("fader", dataclasses.replace(TINY, mosaic_scale=24), SIZE)
    with pytest.raises(ValueError, match="2\\^depth"):
        create_model("fader", TINY, 48)


# --- DINO mask source from a local file ---------------------------------------------------


def fake_dino_state(dim=64, depth=2, patch=14, side=3, layerscale=True):
    """A random state dict in the DINOv2 key layout (small), for the loader only."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    state = {"cls_token": randn(1, 1, dim, scale=1.0), "pos_embed": randn(1, 1 + side * side, dim, scale=1.0),
             "mask_token": torch.zeros(1, dim), "patch_embed.proj.weight": randn(dim, 3, patch, patch, scale=0.02),
             "patch_embed.proj.bias": torch.zeros(dim), "norm.weight": torch.ones(dim), "norm.bias": torch.zeros(dim)}
    for i in range(depth):
        p = f"blocks.{i}."
        state.update({
            p + "norm1.weight": torch.ones(dim), p + "norm1.bias": torch.zeros(dim),
            p + "attn.qkv.weight": randn(3 * dim, dim), p + "attn.qkv.bias": torch.zeros(3 * dim),
            p + "attn.proj.weight": randn(dim, dim), p + "attn.proj.bias": torch.zeros(dim),
            p + "norm2.weight": torch.ones(dim), p + "norm2.bias": torch.zeros(dim),
            p + "mlp.fc1.weight": randn(4 * dim, dim), p + "mlp.fc1.bias": torch.zeros(4 * dim),
            p + "mlp.fc2.weight": randn(dim, 4 * dim), p + "mlp.fc2.bias": torch.zeros(dim),
        })
        if layerscale:
            state[p + "ls1.gamma"] = torch.full((dim,), 0.1)
            state[p + "ls2.gamma"] = torch.full((dim,), 0.1)
    return state


@pytest.mark.parametrize("layerscale", [True, False])  # DINOv2 and DINO (v1) layouts
def test_dino_source_loads_local_weights_after_the_checksum(tmp_path, layerscale):
    path = tmp_path / "vit.pth"
    torch.save(fake_dino_state(layerscale=layerscale), path)
    source = DinoAttentionSource(str(path), sha256_of(path), image_size=56)
    attention = source(images())
    assert attention.shape == (2, 4, 4)
    # one softmax row (CLS → all tokens) without the CLS entry itself
    assert (attention >= 0).all() and attention.sum(dim=(1, 2)).max() <= 1 + 1e-5
    m = model(mask=DinoMask(weights=str(path), sha256=sha256_of(path), image_size=56))
    m.eval()
    assert m.predict(images()).anomaly_map.shape == (2, SIZE, SIZE)
    assert all(k.startswith(("unet.", "predictor.")) for k in m.state_dict())  # the ViT stays out of checkpoints


def test_dino_source_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model\.mask\.weights"):
        load_dino("", "")
    with pytest.raises(FileNotFoundError, match="not found at .*missing.pth"):
        load_dino(str(tmp_path / "missing.pth"), "")
    path = tmp_path / "vit.pth"
    torch.save(fake_dino_state(), path)
    with pytest.raises(ValueError, match="sha256 .* does not match"):
        load_dino(str(path), "0" * 64)
    with pytest.raises(FileNotFoundError, match=r"model\.mask\.weights"):
        model(mask=DinoMask())  # the default path is empty: no weights ship with us
    junk = tmp_path / "junk.pth"
    torch.save({"weight": torch.zeros(2)}, junk)
    with pytest.raises(ValueError, match="no ViT backbone keys"):
        load_dino(str(junk), "")


# --- through the engine -------------------------------------------------------------------


def test_fit_runs_both_phases_and_writes_a_checkpoint(tmp_path, mtsd_root):
    cfg_file = tmp_path / "fader.yaml"
    cfg_file.write_text(f"""
model: {{name: fader, channels: [4, 8, 8, 8, 8], mean_filter: 5, inpaint_epochs: 1,
        fader: {{kind: mlp, hidden: 16, rank_pairs: 64, epochs: 1}}}}
data:
  sources: [{{layout: mtsd, root: '{mtsd_root}'}}]
  image_size: 64
  batch_size: 4
  eval_batch_size: 8
train: {{epochs: 1, log_every: 1, progress: false, accelerator: cpu}}
output_dir: '{tmp_path / "run"}'
""")
    result = run(load_config(cfg_file), evaluate_test=False)
    log = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert {r["phase"] for r in log} == {"main", "fader"}
    assert any("fader/rank" in r and "decoder/l2" in r for r in log)
    assert (result.checkpoint / "model.safetensors").exists()


def test_a_frozen_target_decoder_keeps_the_pretrained_reconstruction_while_the_decoder_is_tuned():
    m = model(stage=dict(target_decoder="frozen"))
    m.train()
    for name in m.phases()[1].frozen:  # as the engine does for the phase
        m.get_submodule(name).eval()
    x, cls = images(), torch.zeros(2, dtype=torch.long)
    pretrained = {k: v.clone() for k, v in m.unet.decoder.state_dict().items()}
    m.start_phase("fader")
    opts = {g: torch.optim.SGD(group.params, lr=0.5) for g, group in m.optimizer_groups("fader").items()}
    for _ in range(2):
        handoff = {}
        for group, opt in opts.items():
            opt.zero_grad()
            parts = m.training_step(x, cls, StepContext(0, phase="fader", group=group, handoff=handoff))
            handoff = parts.handoff or handoff
            parts.total.backward()
            opt.step()
    assert bool(m.target_decoder_filled)
    for k, v in m.target_decoder.state_dict().items():
        assert torch.equal(v, pretrained[k]), k
    assert any(not torch.equal(v, pretrained[k]) for k, v in m.unet.decoder.state_dict().items())
    assert not any(p.requires_grad for p in m.target_decoder.parameters())
    # the copy and its flag travel with the weights: a reload does not copy the tuned decoder
    again = model(stage=dict(target_decoder="frozen"))
    again.load_state_dict(m.state_dict())
    for k, v in again._plain_decoder().state_dict().items():
        assert torch.equal(v, pretrained[k]), k


# --- the config: one key per exclusive choice, ranges checked at load -----------------------


def build(*overrides):
    return load_config(None, ["--model.name", "fader", *overrides]).model


def test_each_choice_is_one_key_whose_kind_picks_its_settings():
    assert FADeRConfig().mask == SaliencyMask() and FADeRConfig().fader == MLPFader()  # the paper's MLP
    cfg = build("--model.mask", "grid", "--model.fader", "none")
    assert cfg.mask == GridMask() and cfg.fader == NoFader()
    cfg = build("--model.mask.kind", "dino", "--model.mask.weights", "vit.pth", "--model.fader.kind", "vit",
                "--model.fader.depth", "3", "--model.fader.attenuation", "{kind: hard, threshold: 0.4}")
    assert cfg.mask == DinoMask(weights="vit.pth")
    assert cfg.fader == ViTFader(depth=3, attenuation=HardAttenuation(threshold=0.4))


@pytest.mark.parametrize("overrides, key, chosen", [
    (["--model.mask.kind", "saliency", "--model.mask.weights", "vit.pth"], "model.mask.weights",
     "model.mask.kind: saliency"),
    (["--model.mask.kind", "none", "--model.mask.ratio", "0.2"], "model.mask.ratio", "model.mask.kind: none"),
    (["--model.fader.kind", "mlp", "--model.fader.depth", "2"], "model.fader.depth", "model.fader.kind: mlp"),
    (["--model.fader.kind", "vit", "--model.fader.hidden", "64"], "model.fader.hidden", "model.fader.kind: vit"),
    (["--model.fader.kind", "none", "--model.fader.epochs", "3"], "model.fader.epochs", "model.fader.kind: none"),
    (["--model.fader.attenuation.kind", "soft", "--model.fader.attenuation.threshold", "0.5"],
     "model.fader.attenuation.threshold", "model.fader.attenuation.kind: soft"),
])
def test_a_setting_of_an_option_not_chosen_names_both_keys(overrides, key, chosen):
    with pytest.raises(ConfigError) as err:
        build(*overrides)
    assert f"'{key}'" in str(err.value) and f"'{chosen}'" in str(err.value)


@pytest.mark.parametrize("key, value", [
    ("mosaic_scale", "0"), ("channels", "[4, -8]"), ("mask.ratio", "1.5"), ("train_random_mask_ratio", "-0.1"),
    ("fader.hidden", "0"), ("fader.rank_pairs", "0"), ("fader.decoder_lr_scale", "0"), ("fader.epochs", "-1"),
    ("mean_filter", "0"), ("msgms_scales", "0"), ("topk", "2"),
])
def test_a_number_out_of_range_names_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"'model\.{key}(\[\d\])?' must be"):
        build(f"--model.{key}", value)
