"""The feature cache: features of images already seen are reused, never those of another image or extractor."""

from __future__ import annotations

import torch

from defectscope.layers.backbones import BackboneConfig, FrozenBackbone
from defectscope.layers.feature_cache import FeatureCache, digest_of
from defectscope.layers.patch_features import PatchFeatures


class CountingExtractor:
    """A stand-in for a backbone: records every image it computes."""

    def __init__(self) -> None:
        self.computed = 0

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        self.computed += len(images)
        return [images.mean(dim=1, keepdim=True) * 2 + images[:, :1] ** 2, images[:, :, ::2, ::2] * 3]


def assert_same(found: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(found) == len(expected)
    for f, e in zip(found, expected, strict=True):
        torch.testing.assert_close(f, e, rtol=0, atol=0)


def test_seen_images_are_taken_from_the_cache_in_any_batch_order():
    images = torch.rand(6, 3, 8, 8)
    extractor = CountingExtractor()
    cache = FeatureCache(max_bytes=2**20)
    first = cache.features(b"x", images[:4], extractor)
    assert extractor.computed == 4
    again = cache.features(b"x", images[[5, 2, 0, 4]], extractor)  # two seen, two new
    assert extractor.computed == 6
    assert_same(again, CountingExtractor()(images[[5, 2, 0, 4]]))
    assert_same(first, CountingExtractor()(images[:4]))
    assert (cache.reused, cache.computed) == (2, 6)
    cache.features(b"x", images, extractor)
    assert extractor.computed == 6 and cache.summary()["reused"] == 8


def test_another_extractor_or_a_changed_pixel_is_a_miss():
    images = torch.rand(2, 3, 8, 8)
    extractor = CountingExtractor()
    cache = FeatureCache(max_bytes=2**20)
    cache.features(b"x", images, extractor)
    cache.features(b"y", images, extractor)
    assert extractor.computed == 4
    changed = images.clone()
    changed[1, 2, 7, 7] = torch.nextafter(changed[1, 2, 7, 7], torch.tensor(2.0))
    out = cache.features(b"x", changed, extractor)
    assert extractor.computed == 5
    assert_same(out, CountingExtractor()(changed))
    # the same bytes as another dtype or shape are another image
    assert digest_of(torch.zeros(4, dtype=torch.int32)) != digest_of(torch.zeros(4))
    assert digest_of(torch.zeros(2, 8)) != digest_of(torch.zeros(4, 4))
    assert digest_of(images[0].permute(0, 2, 1).contiguous().permute(0, 2, 1)) == digest_of(images[0])  # layout is not


def test_an_image_twice_in_one_batch_is_held_once():
    image = torch.rand(1, 3, 8, 8)
    cache = FeatureCache(max_bytes=2**20)
    cache.features(b"x", torch.cat([image, image]), CountingExtractor())
    assert len(cache.entries) == 1 and cache.held_bytes == (1 * 8 * 8 + 3 * 4 * 4) * 4


def test_the_budget_bounds_what_is_held_and_not_what_is_returned():
    images = torch.rand(5, 3, 8, 8)
    row_bytes = (1 * 8 * 8 + 3 * 4 * 4) * 4  # both maps of one image
    cache = FeatureCache(max_bytes=2 * row_bytes)
    extractor = CountingExtractor()
    out = cache.features(b"x", images, extractor)
    assert len(cache.entries) == 2 and cache.held_bytes == 2 * row_bytes
    assert_same(out, CountingExtractor()(images))
    cache.features(b"x", images, extractor)
    assert extractor.computed == 5 + 3  # the two held are reused, the three beyond the budget computed again


def test_patch_features_use_the_cache_only_without_gradient_and_know_their_weights():
    torch.manual_seed(0)
    features = PatchFeatures(FrozenBackbone(BackboneConfig(pretrained=False), "middle"))
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = features(images)
    cache = FeatureCache(max_bytes=2**24)
    features.share_cache(cache)
    with torch.no_grad():
        torch.testing.assert_close(features(images), plain, rtol=0, atol=0)
        torch.testing.assert_close(features(images), plain, rtol=0, atol=0)
    assert (cache.computed, cache.reused) == (2, 2)
    features(images)  # with gradient enabled: computed, not cached
    assert (cache.computed, cache.reused) == (2, 2)
    # a weight changed in place (a checkpoint loaded into it): the old features are not served
    with torch.no_grad():
        next(features.parameters()).mul_(0.5)
        changed = features(images)
    assert cache.computed == 4 and not torch.allclose(changed, plain)
    features.share_cache(None)
    with torch.no_grad():
        torch.testing.assert_close(features(images), changed, rtol=0, atol=0)
    # two extractors built alike with random weights differ: never each other's features
    other = FrozenBackbone(BackboneConfig(pretrained=False), "middle")
    assert other.identity() != features.backbone.identity()


def test_weights_replaced_by_new_tensors_change_the_identity():
    torch.manual_seed(0)
    backbone = FrozenBackbone(BackboneConfig(pretrained=False), "middle")
    before = backbone.identity()
    state = {k: v * 2 if v.is_floating_point() else v for k, v in backbone.state_dict().items()}
    backbone.load_state_dict(state, assign=True)  # new tensors, their version counters at zero again
    after = backbone.identity()
    assert after != before
    backbone.load_state_dict({k: v * 2 if v.is_floating_point() else v for k, v in state.items()}, assign=True)
    assert backbone.identity() not in (before, after)
