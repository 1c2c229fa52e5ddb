"""The calibration a detector carries: thresholds, the promise behind each, and the held-out scores.

Torch-free (numpy only), so the torch checkpoint, the ONNX runtime, predict, serve and the report
read one typed object instead of a dict of strings.

Thresholds follow the conformal (order-statistic) rule: with n held-out normal scores and a
stated false-alarm rate α, the threshold is the k-th smallest score, k = ⌈(n + 1)(1 − α)⌉. If a
new normal image is exchangeable with the held-out ones (drawn like them: same lot, lighting,
camera), its rank among the n + 1 scores is uniform, so P(new score > threshold) =
(n + 1 − k) / (n + 1) ≤ α (less with ties). When k > n, no held-out score is high enough: the
largest is used, which promises only 1 / (n + 1), and a CalibrationWarning says so.

The held-out image scores themselves travel with the calibration, so the threshold can be set
again for another rate without scoring anything (`Calibration.at_rate`).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Calibration", "CalibrationError", "CalibrationWarning", "HeldOut", "Threshold", "conformal_rank",
           "conformal_threshold", "min_samples"]


class CalibrationWarning(UserWarning):
    """Too few held-out normal scores for the stated false-alarm rate."""


class CalibrationError(ValueError):
    """A stored calibration is malformed; the message names the key."""


def conformal_rank(n: int, alpha: float) -> int:
    """k = ⌈(n + 1)(1 − α)⌉, the rank whose score a new normal one exceeds with probability ≤ α.

    Rounded to 9 decimals first so that float noise in (n + 1)(1 − α) (e.g. 100 × 0.99) cannot
    move k up by one; may exceed n.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"false-alarm rate must lie strictly between 0 and 1, got {alpha}")
    if n < 1:
        raise ValueError("no held-out normal scores to set a threshold from")
    return max(1, math.ceil(round((n + 1) * (1 - alpha), 9)))


def min_samples(alpha: float) -> int:
    """The fewest held-out scores for which the rule reaches alpha: n ≥ 1/α − 1."""
    return max(1, math.ceil(round(1 / alpha - 1, 9)))


@dataclass(frozen=True)
class Threshold:
    """A threshold with the false-alarm promise it carries."""

    value: float
    false_alarm_rate: float  # the stated rate α
    bound: float  # the promise: P(new normal score > value) ≤ (n + 1 − rank) / (n + 1)
    n: int  # held-out normal scores it was chosen from
    rank: int  # 1-based rank of the threshold among them

    @property
    def capped(self) -> bool:
        """True when n was too small for the stated rate and the largest score stands in."""
        return self.bound > self.false_alarm_rate

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "false_alarm_rate": self.false_alarm_rate, "bound": self.bound,
                "n": self.n, "rank": self.rank}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Threshold:
        entries = _mapping(data, where)
        return cls(value=_number(entries, "value", where), false_alarm_rate=_rate(entries, "false_alarm_rate", where),
                   bound=_rate(entries, "bound", where, closed=True), n=_count(entries, "n", where),
                   rank=_count(entries, "rank", where))


def conformal_threshold(scores: np.ndarray | Sequence[float], alpha: float, what: str = "image") -> Threshold:
    """The k-th smallest of `scores` (k = conformal_rank); warns naming n, α and 1/(n + 1) when k > n."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    n = flat.size
    k = conformal_rank(n, alpha)
    if k > n:
        warnings.warn(
            f"n = {n} held-out normal {what} scores cannot promise a false-alarm rate of {alpha:g} "
            f"(that needs at least {min_samples(alpha)}); the {what} threshold is their largest score, "
            f"which promises {1 / (n + 1):.4g} (1/(n+1)). Hold out more normal images "
            f"(data.validation_fraction) or state a rate of at least {1 / (n + 1):.4g}",
            CalibrationWarning,
            stacklevel=2,
        )
        k = n
    value = float(np.partition(flat, k - 1)[k - 1])
    return Threshold(value=value, false_alarm_rate=alpha, bound=(n + 1 - k) / (n + 1), n=n, rank=k)


@dataclass(frozen=True)
class HeldOut:
    """The held-out normal image scores a threshold was chosen from (sorted), and their mean and spread."""

    scores: tuple[float, ...]

    @classmethod
    def of(cls, scores: np.ndarray | Sequence[float]) -> HeldOut:
        return cls(tuple(float(s) for s in np.sort(np.asarray(scores, dtype=np.float64).ravel())))

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores)) if self.scores else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.scores)) if self.scores else float("nan")

    def threshold(self, alpha: float, what: str = "image") -> Threshold:
        return conformal_threshold(np.asarray(self.scores), alpha, what)

    def threshold_at(self, value: float) -> Threshold:
        """A threshold the user names, with the promise the held-out scores give it: k of the n are at or
        below it, so a new normal score exceeds it with probability at most (n + 1 − k) / (n + 1)."""
        n = len(self.scores)
        k = int(np.searchsorted(np.asarray(self.scores), value, side="right"))
        if k == 0:
            raise ValueError(f"threshold {value:g} is below every one of the {n} held-out normal scores (lowest "
                             f"{self.scores[0]:.6g}): it would flag every good part")
        bound = (n + 1 - k) / (n + 1)
        return Threshold(value=float(value), false_alarm_rate=bound, bound=bound, n=n, rank=k)


@dataclass(frozen=True)
class ImageCalibration:
    """One image threshold and the held-out scores behind it (pooled, or one class's)."""

    threshold: Threshold
    held_out: HeldOut

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold.to_dict(), "held_out_scores": list(self.held_out.scores)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ImageCalibration:
        entries = _mapping(data, where)
        scores = entries.get("held_out_scores")
        if not isinstance(scores, list) or not all(_is_number(s) for s in scores):
            raise CalibrationError(f"{where}.held_out_scores must be a list of finite numbers")
        return cls(Threshold.from_dict(entries.get("threshold"), f"{where}.threshold"), HeldOut.of(scores))


@dataclass(frozen=True)
class Calibration:
    """Everything a detector needs to turn scores into verdicts, and to say what it promises.

    `image` is the pooled image threshold; `classes` (name → its own threshold) where a
    multi-class model was calibrated per class, and `for_class` picks the one that applies.
    `pixel` colours heatmaps and decides the defect area (the expected share of a normal image's
    pixels above it, not a per-image guarantee: pixels of one image are not independent).
    """

    image: ImageCalibration
    pixel: Threshold | None = None
    classes: Mapping[str, ImageCalibration] = field(default_factory=dict)

    @classmethod
    def fit(cls, image_scores: np.ndarray, false_alarm_rate: float, pixel_scores: np.ndarray | None = None,
            pixel_false_alarm_rate: float | None = None, class_ids: np.ndarray | None = None,
            class_names: Sequence[str] = ()) -> Calibration:
        """Image thresholds (and the pixel one, when given) from held-out normal scores.

        With several classes, each class gets its own image threshold from its own held-out
        scores (one pooled threshold would promise the rate only on average over the classes:
        too strict for one, too loose for another); the pooled one stays for a class with no
        held-out image and as the summary.
        """
        held_out = HeldOut.of(image_scores)
        pixel = None
        if pixel_scores is not None and pixel_false_alarm_rate is not None:
            pixel = conformal_threshold(pixel_scores, pixel_false_alarm_rate, "pixel")
        classes: dict[str, ImageCalibration] = {}
        if class_ids is not None and len(class_names) > 1:
            scores, ids = np.asarray(image_scores), np.asarray(class_ids)
            for class_id, name in enumerate(class_names):
                own = HeldOut.of(scores[ids == class_id])
                if own.scores:
                    classes[name] = ImageCalibration(own.threshold(false_alarm_rate, f"{name} image"), own)
        return cls(ImageCalibration(held_out.threshold(false_alarm_rate), held_out), pixel, classes)

    def for_class(self, class_name: str | None) -> ImageCalibration:
        return self.classes.get(class_name, self.image) if class_name is not None else self.image

    @property
    def false_alarm_rate(self) -> float:
        return self.image.threshold.false_alarm_rate

    def at_rate(self, false_alarm_rate: float) -> Calibration:
        """The same held-out scores, thresholds set again for another stated rate: nothing is re-scored."""
        def again(part: ImageCalibration) -> ImageCalibration:
            return ImageCalibration(part.held_out.threshold(false_alarm_rate), part.held_out)

        return Calibration(again(self.image), self.pixel, {k: again(v) for k, v in self.classes.items()})

    def at_score(self, value: float, class_name: str | None = None) -> Calibration:
        """The image threshold set to `value` (one class's, when named), its promise read off the held-out scores."""
        if class_name is not None and class_name in self.classes:
            part = self.classes[class_name]
            moved = ImageCalibration(part.held_out.threshold_at(value), part.held_out)
            return Calibration(self.image, self.pixel, {**self.classes, class_name: moved})
        if self.classes:
            raise ValueError(f"this model has a threshold per class ({', '.join(self.classes)}); name the one to set")
        return Calibration(ImageCalibration(self.image.held_out.threshold_at(value), self.image.held_out), self.pixel)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image.to_dict(), "pixel": None if self.pixel is None else self.pixel.to_dict(),
                "classes": {k: v.to_dict() for k, v in self.classes.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration") -> Calibration:
        entries = _mapping(data, where)
        unknown = sorted(set(entries) - {"image", "pixel", "classes"})
        if unknown:
            raise CalibrationError(f"{where}: unknown keys {unknown[:3]}")
        pixel = entries.get("pixel")
        classes = _mapping(entries.get("classes", {}), f"{where}.classes")
        return cls(
            image=ImageCalibration.from_dict(entries.get("image"), f"{where}.image"),
            pixel=None if pixel is None else Threshold.from_dict(pixel, f"{where}.pixel"),
            classes={str(k): ImageCalibration.from_dict(v, f"{where}.classes.{k}") for k, v in classes.items()},
        )

    @classmethod
    def from_json(cls, text: str, where: str = "calibration") -> Calibration | None:
        """None for `{}` (a checkpoint saved before calibration, e.g. during training)."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise CalibrationError(f"{where} is not valid JSON ({err})") from err
        return None if data == {} else cls.from_dict(data, where)

    def summary(self, class_name: str | None = None) -> dict[str, Any]:
        """The flat fields clients read (`info()`, scores.json, /model): the threshold that applies and its promise."""
        part = self.for_class(class_name)
        t = part.threshold
        return {
            "image_threshold": t.value,
            "false_alarm_rate": t.false_alarm_rate,
            "false_alarm_bound": t.bound,
            "held_out_normals": t.n,
            "threshold_rank": t.rank,
            "image_score_mean": part.held_out.mean,
            "image_score_std": part.held_out.std,
            "pixel_threshold": None if self.pixel is None else self.pixel.value,
            "pixel_false_alarm_rate": None if self.pixel is None else self.pixel.false_alarm_rate,
            "per_class": bool(self.classes),
        }


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise CalibrationError(f"{where} must be a JSON object, got {type(data).__name__}")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(entries: Mapping[str, Any], key: str, where: str) -> float:
    value = entries.get(key)
    if not _is_number(value):
        raise CalibrationError(f"{where}.{key} must be a finite number, got {str(value)[:40]}")
    return float(value)


def _rate(entries: Mapping[str, Any], key: str, where: str, closed: bool = False) -> float:
    value = _number(entries, key, where)
    if not (0 < value <= 1 if closed else 0 < value < 1):
        raise CalibrationError(f"{where}.{key} must lie in (0, 1{']' if closed else ')'}, got {value:g}")
    return value


def _count(entries: Mapping[str, Any], key: str, where: str) -> int:
    value = entries.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CalibrationError(f"{where}.{key} must be a positive integer, got {str(value)[:40]}")
    return value
