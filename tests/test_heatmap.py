"""The heatmap's colours: a lookup table that stays within one unit of the continuous ramp."""

import numpy as np

from defectscope.heatmap import HEAT_STOPS, heat_colormap, heat_overlay


def continuous_ramp(values: np.ndarray) -> np.ndarray:
    """The ramp computed per value, linear between the stops (the reference)."""
    v = np.clip(values.astype(np.float64), 0, 1)
    return np.stack([np.interp(v, np.linspace(0, 1, len(HEAT_STOPS)), HEAT_STOPS[:, c]) for c in range(3)], -1)


def test_the_colours_stay_within_one_unit_of_the_continuous_ramp_and_clip_outside_it():
    values = np.linspace(-0.2, 1.2, 200_001, dtype=np.float32)
    got = heat_colormap(values)
    assert got.dtype == np.uint8 and got.shape == (len(values), 3)
    assert np.abs(got.astype(float) - continuous_ramp(values)).max() <= 1.0
    assert (got[values <= 0] == HEAT_STOPS[0]).all() and (got[values >= 1] == HEAT_STOPS[-1]).all()
    assert heat_colormap(np.full((2, 3), np.nan, np.float32)).shape == (2, 3, 3)  # NaN gets a colour, no error


def test_the_overlay_is_half_input_half_heat():
    rng = np.random.default_rng(0)
    image, amap = rng.random((30, 50, 3), dtype=np.float32), rng.random((30, 50), dtype=np.float32)
    rgb, blend = heat_overlay(image, amap, None, max_side=100)
    low, high = float(np.median(amap)), float(amap.max())
    heat = heat_colormap((amap - low) / (high - low))
    assert np.array_equal(rgb, np.round(image * 255).astype(np.uint8))  # same size: no resampling
    assert np.abs(blend.astype(int) - (rgb.astype(int) + heat.astype(int)) // 2).max() == 0
