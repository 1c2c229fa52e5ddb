import pytest
import torch

from defectscope.layers.backbones import BackboneConfig
from defectscope.models.base import StepContext
from defectscope.models.pvqae.config import (
    DetailRichness,
    FeatureTarget,
    ImageTarget,
    NoDiscriminator,
    NoPrior,
    PatchGAN,
    PerClassPrior,
    PVQAEConfig,
    QuantizeThenRoute,
    RouteThenQuantize,
    UniversalPrior,
)
from defectscope.models.pvqae.model import PVQAE
from defectscope.models.pvqae.routing import one_hot_levels

TINY = dict(channels=8, channel_mult=(1, 1, 2, 2), res_blocks=(1, 1, 1, 1), num_codes=16, code_dim=8,
            router_hidden=8, adversarial=PatchGAN(channels=8, layers=2, start=0),
            prior=PerClassPrior(dim=16, heads=2))
RANDOM_MOBILENET = BackboneConfig(pretrained=False, taps=(1, 3))


def make(**overrides):
    torch.manual_seed(0)
    return PVQAE(PVQAEConfig(**{**TINY, **overrides}), image_size=32, num_classes=2)


def images(n=2):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1][:n])


def test_three_levels_on_the_last_three_encoder_stages():
    model = make()
    features = model.encoder(torch.rand(1, 3, 32, 32))
    assert [f.shape[-1] for f in features] == [16, 8, 4]
    assert model.coarse_grid == (4, 4)


def test_phases_and_groups():
    assert [p.name for p in make().phases()] == ["main", "prior"]
    assert [p.name for p in make(prior=NoPrior()).phases()] == ["main"]
    assert set(make().optimizer_groups("main")) == {"main", "disc"}
    assert set(make(adversarial=NoDiscriminator()).optimizer_groups("main")) == {"main"}


def test_autoencoder_step_logs_codebook_and_budget_numbers():
    model = make()
    x, c = images()
    loss = model.training_step(x, c, StepContext(5, progress=0.5))
    assert {"rec", "vq", "budget", "g_adv"} <= set(loss.parts)
    metrics = loss.metrics
    assert metrics["lambda_b"] == pytest.approx(1.25 * 0.5)
    assert sum(metrics[f"level{k}_share"] for k in range(3)) == pytest.approx(1.0)
    assert 1 <= metrics["live_codes0"] <= 16
    d = model.training_step(x, c, StepContext(5, phase="main", group="disc", progress=0.5, handoff=loss.handoff))
    d.total.backward()
    assert all(p.grad is not None for p in model.discriminator.parameters())


def test_prior_phase_changes_neither_the_autoencoder_nor_its_codebooks():
    model = make()
    x, c = images()
    model.train()
    model.training_step(x, c, StepContext(0))  # k-means initialises the codebooks
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("prior.")}
    opt = torch.optim.Adam(model.optimizer_groups("prior")["prior"].params, 1e-2)
    for _ in range(3):
        opt.zero_grad()
        model.training_step(x, c, StepContext(0, phase="prior", group="prior")).total.backward()
        opt.step()
    for k, v in model.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k


def test_explain_reconstructs_with_the_prior_budget():
    model = make().eval()
    x, c = images()
    out = model.explain(x, c)
    assert out.anomaly_map.shape == out.rec_score.shape == out.budget_score.shape == (2, 32, 32)
    assert out.levels.shape == out.prior_levels.shape == (2, 4, 4)
    assert (out.budget_score >= 0).all()
    # reconstructing with the prior levels is what S_rec measures
    features = model.encoder(x * 2 - 1)

    expected = model.reconstruct(features, one_hot_levels(out.prior_levels, 3)).output.clamp(-1, 1) * 0.5 + 0.5
    assert torch.allclose(out.reconstruction, expected, atol=1e-6)


@pytest.mark.parametrize("overrides", [{"routing": RouteThenQuantize()},
                                       {"routing": QuantizeThenRoute(shared_codebook=True)},
                                       {"prior": UniversalPrior(dim=16, heads=2)}, {"prior": NoPrior()},
                                       {"prior": PerClassPrior(dim=16, heads=2, score="one_plus_product")},
                                       {"pixel_shuffle_output": True, "budget_target": 2.0}])
def test_variants_train_and_score(overrides):
    model = make(**overrides)
    x, c = images()
    model.training_step(x, c, StepContext(0)).total.backward()
    model.eval()
    out = model.predict(x, c)
    assert out.anomaly_map.shape == (2, 32, 32) and torch.isfinite(out.image_score).all()


def test_a_few_steps_reduce_the_reconstruction_loss():
    model = make(adversarial=NoDiscriminator(), lambda_max=0.0)
    x, c = images(2)
    opt = torch.optim.Adam(model.optimizer_groups("main")["main"].params, 3e-3)
    losses = []
    for step in range(30):
        opt.zero_grad()
        loss = model.training_step(x, c, StepContext(step))
        loss.total.backward()
        opt.step()
        losses.append(loss.parts["rec"].item())
    assert sum(losses[-5:]) < sum(losses[:5])


def test_explain_maps_are_pixel_sized_and_levels_are_in_unit_range():
    model = make().eval()
    x, c = images()
    maps = model.explain_maps(x, c)
    assert set(maps) == {"code level (dynamic)", "code level (prior)", "S_budget", "S_rec"}
    for value in maps.values():
        assert value.shape == (2, 32, 32)
    assert maps["code level (dynamic)"].min() >= 0 and maps["code level (dynamic)"].max() <= 1


def test_profile_covers_every_stage():
    import importlib.util

    from helpers.benchmarks import REPO_ROOT

    spec = importlib.util.spec_from_file_location("profile_pvqae", REPO_ROOT / "scripts" / "profile_pvqae.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    parts = script.profile_parts(make(), batch=2, size=32, iterations=1)
    assert {"encoder", "routing", "budget prior", "quantise + decode", "scoring"} <= set(parts)
    assert all(v > 0 for v in parts.values())


def test_pixel_shuffle_output_has_no_full_resolution_convolution():
    model = make(pixel_shuffle_output=True)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
             for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    codes = torch.rand(1, 8, 16, 16)
    assert model.decoder(codes).shape == (1, 3, 32, 32)
    assert max(seen) == 16  # every conv at half resolution or below; the pixel shuffle makes 32
    for hook in hooks:
        hook.remove()


def test_perceptual_term_joins_the_reconstruction_loss_but_not_the_optimiser():
    model = make(target=ImageTarget(perceptual_weight=0.5, backbone=RANDOM_MOBILENET))
    x, c = images()
    loss = model.training_step(x, c, StepContext(5, progress=0.5))
    parts = loss.parts
    assert parts["perceptual"] > 0
    assert parts["rec"].item() == pytest.approx((parts["pixel"] + 0.5 * parts["perceptual"]).item(), rel=1e-5)
    trained = {id(p) for group in model.optimizer_groups("main").values() for p in group.params}
    assert not any(id(p) in trained for p in model.perceptual.parameters())
    loss.total.backward()
    assert model.decoder.last_layer.grad is not None
    assert all(p.grad is None for p in model.perceptual.parameters())


def test_without_perceptual_weight_no_backbone_is_built():
    model = make()
    assert model.perceptual is None
    assert not any(k.startswith("perceptual.") for k in model.state_dict())
    assert "perceptual" not in model.training_step(*images(), StepContext(5)).parts


def test_perceptual_rec_distance_scores_with_the_feature_distance_map():
    model = make(target=ImageTarget(rec_distance="perceptual", backbone=RANDOM_MOBILENET)).eval()
    assert model.perceptual is not None  # built for scoring even without the training term
    x, c = images()
    out = model.explain(x, c)
    expected = model.perceptual.distance_map(x, out.reconstruction)
    assert torch.allclose(out.rec_score, expected)
    assert out.rec_score.shape == (2, 32, 32) and (out.rec_score >= 0).all()
    assert "perceptual" not in model.training_step(x, c, StepContext(5)).parts  # weight 0: no training term



FEATURES = FeatureTarget(backbone=BackboneConfig(pretrained=False, taps=(3, 6)))


def make_features(jitter=0.0, **overrides):
    """A feature-target PVQAE on random MobileNetV2 blocks 3 and 6 (stride 4: a 16² grid for 64 px)."""
    torch.manual_seed(0)
    cfg = {**TINY, "channel_mult": (1, 2, 2), "res_blocks": (1, 1, 1),
           "target": FeatureTarget(backbone=FEATURES.backbone, jitter=jitter), **overrides}
    return PVQAE(PVQAEConfig(**cfg), image_size=64, num_classes=2)


def test_feature_target_codes_levels_over_the_feature_grid():
    model = make_features()
    x = torch.rand(2, 3, 64, 64)
    target = model.target(x)
    assert target.shape == (2, 24 + 32, 16, 16)  # MobileNetV2 block 3 (24) and 6 (32) channels
    assert [f.shape[-1] for f in model.encoder(target)] == [16, 8, 4]
    assert model.coarse_grid == (4, 4)
    assert model.reconstruct(model.encoder(target), torch.ones(2, 3, 4, 4) / 3).output.shape == target.shape


def test_feature_target_trains_the_autoencoder_on_the_features_and_never_the_backbone():
    model = make_features()
    x = torch.rand(2, 3, 64, 64)
    loss = model.training_step(x, torch.tensor([0, 1]), StepContext(5, progress=0.5))
    trained = {id(p) for group in model.optimizer_groups("main").values() for p in group.params}
    assert not any(id(p) in trained for p in model.features.parameters())
    loss.total.backward()
    assert model.encoder.conv_in.weight.grad is not None and model.decoder.last_layer.grad is not None
    assert all(p.grad is None for p in model.features.parameters())
    assert model.discriminator.net[0].in_channels == 56  # judges features, as the decoder makes them
    disc = StepContext(5, phase="main", group="disc", progress=0.5, handoff=loss.handoff)
    model.training_step(x, torch.tensor([0, 1]), disc).total.backward()


def test_feature_target_scores_the_squared_feature_error_at_pixels():
    model = make_features(prior=PerClassPrior(dim=16, heads=2, score="rec"), smoothing_sigma=0.0).eval()
    x, c = torch.rand(2, 3, 64, 64), torch.tensor([0, 1])
    out = model.explain(x, c)
    assert out.reconstruction is None and out.rec_score.shape == (2, 64, 64)
    target = model.target(x)
    rebuilt = model.reconstruct(model.encoder(target), one_hot_levels(out.prior_levels, 3).float()).output
    error = (rebuilt - target).pow(2).sum(dim=1)  # (2, 16, 16); each feature cell covers 4×4 pixels
    assert torch.allclose(out.rec_score.mean(dim=(1, 2)), error.mean(dim=(1, 2)), rtol=1e-4)
    assert out.rec_score.argmax() // 64 // 4 == error.argmax() // 16  # the worst cell's row, at pixels
    assert torch.equal(out.anomaly_map, out.rec_score)


def test_feature_target_image_size_must_fit_the_feature_stride():
    cfg = PVQAEConfig(**{**TINY, "channel_mult": (1, 2, 2), "res_blocks": (1, 1, 1), "target": FEATURES})
    with pytest.raises(ValueError, match=r"divisible by 16 \(feature stride 4"):
        PVQAE(cfg, image_size=56)


def test_feature_jitter_noises_the_encoders_input_in_training_only():
    model = make_features(jitter=20.0)
    x, c = torch.rand(2, 3, 64, 64), torch.tensor([0, 1])
    seen = []
    model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    model.training_step(x, c, StepContext(5, progress=0.5))
    target = model.target(x)
    assert seen[0].shape == target.shape and not torch.allclose(seen[0], target)
    model.eval()
    model.explain(x, c)
    assert torch.equal(seen[-1], target)  # scoring sees the clean features


def test_router_that_sees_richness_is_trained_on_it_and_routes_by_it_at_inference():
    model = make_features(router_sees_richness=True)
    first = model.router.mlp[0]
    assert first.in_channels == 3 * TINY["code_dim"] + 1  # three pooled levels and H_p
    x, c = torch.rand(2, 3, 64, 64), torch.tensor([0, 1])
    model.training_step(x, c, StepContext(5, progress=0.5)).total.backward()
    assert first.weight.grad[:, -1].abs().sum() > 0  # the entropy channel's weights learn
    model.eval()
    features = model.encoder(model.target(x))
    with torch.no_grad():
        first.weight[:, -1] += 100.0  # a router ruled by H_p: textured cells and flat ones part
        flat = torch.full_like(x, 0.5)
        assert not torch.equal(model.hard_routing(features, x).logits, model.hard_routing(features, flat).logits)
    assert model.explain(x, c).anomaly_map.shape == (2, 64, 64)


def test_single_level_losses_train_the_decoder_on_every_level_whatever_the_routing():
    model = make_features(routing=QuantizeThenRoute(level_rec_weight=1.0))
    x, c = torch.rand(2, 3, 64, 64), torch.tensor([0, 1])
    decoded = []
    model.decoder.register_forward_hook(lambda module, args, out: decoded.append(args[0].detach()))
    loss = model.training_step(x, c, StepContext(5, progress=0.5))
    assert "level_rec" in loss.parts and len(decoded) == 1 + 3  # the routed map, then each level alone
    for k, block in ((1, 2), (2, 4)):  # level k alone: one code repeated over each of its cells
        cells = decoded[1 + k].unfold(2, block, block).unfold(3, block, block)  # (B, C, 16/b, 16/b, b, b)
        assert torch.equal(cells, cells[..., :1, :1].expand_as(cells))
    assert not torch.equal(decoded[1], decoded[3])
    loss.total.backward()
    assert model.decoder.last_layer.grad is not None
    assert "level_rec" not in make_features().training_step(x, c, StepContext(5, progress=0.5)).parts


def test_detail_richness_makes_fine_codes_cheap_where_the_patch_varies():
    model = PVQAE(PVQAEConfig(**{**TINY, "budget_richness": DetailRichness()}), image_size=64)
    images = torch.full((1, 3, 64, 64), 0.5)
    images[..., :16, :16] += 0.2 * torch.randn(16, 16)  # the top-left cell has detail
    costs = model.budget_costs(images)
    assert costs.shape == (1, 3, *model.coarse_grid)
    assert costs[0, 0, 0, 0] < costs[0, 0, 0, 3] == costs[0, 0, 3, 3]  # detail cheap, flat cells all at the floor
    model.training_step(images, torch.zeros(1, dtype=torch.long), StepContext(5, progress=0.5))




def test_diagnose_reports_level_shares_and_a_collapsed_routing():
    model = make().eval()
    x, c = images()
    found = model.diagnose(x, c)
    assert sum(found[f"level{k}_share"] for k in range(3)) == pytest.approx(1.0)
    model.dynamic_levels = lambda imgs: torch.zeros(imgs.shape[0], *model.coarse_grid, dtype=torch.long)
    collapsed = model.diagnose(x, c)
    assert collapsed["level0_share"] == 1.0 and "S_rec alone" in model.diagnosis_notes(collapsed)[0]
    assert model.diagnosis_notes({"level0_share": 0.953, "level1_share": 0.047, "level2_share": 0.0}) == []
    assert model.reconstruction(x, c).shape == x.shape
