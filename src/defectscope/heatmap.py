"""Heatmap colours, the heatmap-over-input picture and its colour scale, with numpy and Pillow only.

A leaf module (it imports nothing from defectscope), shared by the gallery (`engine.gallery`), the
service's overlay (`serve.images`) and `defectscope predict`'s map pictures, so that all three
colour a map the same way and the last two work on a machine without torch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["colour_scale", "fit_size", "heat_colormap", "heat_overlay", "heat_range", "labelled_heat_overlay"]

SCALE_RED_SHARE = 0.15  # of the colour scale's width: values at or above the top of the ramp, all red
MIN_SCALE_WIDTH = 340  # px: room for the colour scale's words under a small picture


HEAT_STOPS = np.array([[0, 0, 128], [0, 128, 255], [0, 220, 120], [255, 230, 0], [230, 0, 0]], np.float32)
# 1,024 levels: the ramp's steepest channel moves 255 over a quarter of it, so neighbouring levels
# differ by at most one unit of colour; a lookup costs a gather instead of a float pass per channel
_HEAT_LEVELS = 1024


def _ramp(values: np.ndarray) -> np.ndarray:
    """The continuous ramp, [0, 1] → RGB uint8 (linear between the stops)."""
    pos = np.clip(values, 0, 1)[..., None] * (len(HEAT_STOPS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(HEAT_STOPS) - 2)
    frac = pos - lo
    return np.round(HEAT_STOPS[lo[..., 0]] * (1 - frac) + HEAT_STOPS[lo[..., 0] + 1] * frac).astype(np.uint8)


_HEAT_TABLE = _ramp(np.linspace(0, 1, _HEAT_LEVELS, dtype=np.float32))


def heat_colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] → RGB uint8 with a blue–green–yellow–red ramp (no matplotlib needed); NaN reads as 0."""
    levels = np.nan_to_num(np.asarray(values, np.float32), nan=0.0) * (_HEAT_LEVELS - 1) + 0.5
    return _HEAT_TABLE[np.clip(levels, 0, _HEAT_LEVELS - 1).astype(np.intp)]


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) shrunk, never grown, so that the longer side fits `max_side`."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def heat_range(anomaly_map: np.ndarray, high: float | None) -> tuple[float, float]:
    """The map values the colours run between: (the map's median, `high`), `high` None → the map's maximum."""
    high = float(anomaly_map.max()) if high is None else float(high)
    return min(float(np.median(anomaly_map)), high), high


def _overlay(image: np.ndarray, anomaly_map: np.ndarray, high: float | None, max_side: int,
             ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    height, width = anomaly_map.shape
    size = fit_size(width, height, max_side)
    rgb = np.asarray(Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).resize(size, Image.BILINEAR))
    amap = np.asarray(Image.fromarray(anomaly_map.astype(np.float32), "F").resize(size, Image.BILINEAR))
    low, high = heat_range(amap, high)
    heat = heat_colormap((amap - low) / (high - low) if high > low else (amap >= high).astype(np.float32))
    blend = ((rgb.astype(np.uint16) + heat) >> 1).astype(np.uint8)  # half and half, rounded down
    return rgb, blend, (low, high)


def heat_overlay(image: np.ndarray, anomaly_map: np.ndarray, high: float | None, max_side: int,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(input, heatmap over input, half and half), both (h, w, 3) uint8 at the input's size shrunk to fit `max_side`.

    `image` is (H, W, 3) in [0, 1], `anomaly_map` (H, W). Colours run blue → red from the map's own
    median to `high` (the pixel threshold; None: the map's maximum), so red marks pixels at or above
    the threshold whatever the model's units: a map that never comes near 0 (PaDiM's Mahalanobis
    distances) still shows its structure instead of one flat colour.
    """
    rgb, blend, _ = _overlay(image, anomaly_map, high, max_side)
    return rgb, blend


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def colour_scale(width: int, low: float, high: float, threshold: bool) -> np.ndarray:
    """(h, width, 3) uint8 strip saying what each colour means: the ramp from `low` (left) to `high`, then
    red for everything above; `threshold` marks `high` as the pixel threshold, else as the map's maximum."""
    font_size = max(11, round(width / 42))
    font = _font(font_size)
    pad, bar = max(4, font_size // 2), max(10, font_size)
    height = pad + bar + 3 * (font_size + pad // 2) + pad
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    left, right = pad, width - pad
    top = left + round((right - left) * (1 - SCALE_RED_SHARE))  # x of `high`: the ramp's end
    ramp = heat_colormap(np.linspace(0, 1, max(1, top - left), dtype=np.float32))
    strip.paste(Image.fromarray(np.repeat(ramp[None], bar, axis=0)), (left, pad))
    draw.rectangle((top, pad, right, pad + bar - 1), fill=tuple(int(c) for c in heat_colormap(np.ones(1))[0]))
    draw.rectangle((left - 1, pad - 1, right, pad + bar), outline="black")
    draw.line((top, pad - pad // 2, top, pad + bar + pad // 2), fill="black", width=max(2, font_size // 6))
    y = pad + bar + pad // 2
    draw.text((left, y), f"{low:.4g}", fill="black", font=font)
    draw.text((top, y), f"{high:.4g}", fill="black", font=font, anchor="ra")
    y += font_size + pad // 2
    draw.text((left, y), "this map's median", fill="#444444", font=font)
    draw.text((right, y), f"black mark: {'pixel threshold' if threshold else 'map maximum'}", fill="black",
              font=font, anchor="ra")
    y += font_size + pad // 2
    note = "red: at or above the pixel threshold" if threshold else "no pixel threshold: red is the map's maximum"
    draw.text((left, y), note, fill="#444444", font=font)
    return np.asarray(strip)


def labelled_heat_overlay(image: np.ndarray, anomaly_map: np.ndarray, high: float | None, max_side: int,
                          min_side: int = 0) -> np.ndarray:
    """[input | heatmap over input] above the colour scale that reads it, (h, w, 3) uint8.

    Pictures whose longer side is under `min_side` are enlarged by a whole factor, nearest pixel, so
    a 32 px input stays legible and its colour scale fits beneath it.
    """
    rgb, blend, (low, high_used) = _overlay(image, anomaly_map, high, max_side)
    factor = max(1, -(-min_side // max(rgb.shape[:2])))
    if factor > 1:
        rgb, blend = (np.repeat(np.repeat(a, factor, axis=0), factor, axis=1) for a in (rgb, blend))
    pictures = np.concatenate([rgb, np.full((rgb.shape[0], 4, 3), 255, np.uint8), blend], axis=1)
    scale = colour_scale(max(pictures.shape[1], MIN_SCALE_WIDTH), low, high_used, threshold=high is not None)
    if scale.shape[1] > pictures.shape[1]:
        extra = np.full((pictures.shape[0], scale.shape[1] - pictures.shape[1], 3), 255, np.uint8)
        pictures = np.concatenate([pictures, extra], axis=1)
    return np.concatenate([pictures, scale], axis=0)
