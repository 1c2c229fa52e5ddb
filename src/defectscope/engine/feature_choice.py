"""PatchCore's patch setting chosen per line from its good parts alone (`fit --features auto`).

Which patches catch most depends on the parts: on MTSD's textures the stride-32 block adds the
context that tells a blowhole from the grain, on MVTec's bottles and pills it costs a third of
the defects caught (docs/results/backbones.md). No one setting wins both, so a line chooses on
its own images: each candidate is fitted with a hold-out and scored by how many synthetic defects
of the ladder (`engine.synthetic`) pasted into the held-out good parts score above every clean
one. Then the chosen setting is fitted once more on a working size 1.5 times as large each way
and kept there if the ladder gains as much again: small defects on objects (MVTec's pill cracks
and spots) are caught more often when the patches are finer, at about 2.25 times the cost per part.
No defect image and no test label is read.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from defectscope.checks import Side
from defectscope.config import ConfigError, HoldOutCalibration, RunConfig
from defectscope.data.config import AutoSize, DataConfig
from defectscope.data.dataset import DataBundle, build_datasets
from defectscope.data.limits import MAX_IMAGE_PIXELS
from defectscope.engine.files import write_text_atomic
from defectscope.engine.run import run as run_engine
from defectscope.engine.synthetic import LADDER, choose_by_ladder, ladder_criterion
from defectscope.engine.working_size import resolve_working_size
from defectscope.geometry import as_hw
from defectscope.layers.backbones import backbone_spec
from defectscope.models.patchcore.config import PatchCoreConfig
from defectscope.scoring.calibration import CalibrationWarning

Setting = Literal["shipped", "with_last", "first_three", "sparse_bank"]
SETTINGS: tuple[Setting, ...] = ("shipped", "with_last", "first_three", "sparse_bank")
SETTING_HELP: dict[Setting, str] = {
    "shipped": "the last blocks at stride 8 and 16, the configured bank",
    "with_last": "the shipped taps and the last block at stride 32 (more context: textures)",
    "first_three": "taps at stride 4, 8 and 16 on a stride-4 grid (finer maps)",
    "sparse_bank": "the shipped taps, a tenth of the configured bank",
}
# fewer held-out good parts than this and one pasted image moves the criterion by more than 10 %
MIN_HELD_OUT = 10
CHOICE_FOLDER = "feature_choice"  # inside the run folder: one run per candidate and choice.json
CHOICE_FILE = "choice.json"
# the finer working size's pixel budget against `auto`'s: sides 1.5 × (256² → 384²). At 1.25 × the
# sides the ladder did not separate the sizes on MVTec pill, at 1.5 × it did and the test set agreed
# (docs/results/backbones.md, "Does a finer working size catch more?"); a part costs about the
# pixels' ratio more in fit and in predict. cli/fit.py's help states these figures
FINER_PIXELS = 2.25
FINER = "finer"  # the candidate's folder: <setting>_finer


@dataclass(frozen=True)
class FinerSize:
    """The chosen setting fitted again on the finer working size, and whether it is kept."""

    pixels: int  # the AutoSize budget tried
    base: tuple[int, int]  # (height, width) the settings were chosen at
    resolved: tuple[int, int]  # (height, width) the budget resolves to for these images
    found: dict[str, float]  # its ladder criterion, on the same held-out parts
    chosen: bool

    @property
    def cost(self) -> float:
        """What a part costs at this size against the base one: the ratio of their pixels."""
        return self.resolved[0] * self.resolved[1] / (self.base[0] * self.base[1])


@dataclass(frozen=True)
class FeatureChoice:
    chosen: Setting
    model: PatchCoreConfig  # the chosen setting applied to the config's model
    held_out: int  # good parts held out to choose by
    found: dict[str, dict[str, float]]  # setting → its ladder criterion; empty when too few were held out
    # data.image_size to fit with: the config's, or the finer AutoSize where that won
    image_size: Side | tuple[Side, Side] | AutoSize
    finer: FinerSize | None = None  # where it was tried: data.image_size auto, enough held-out parts

    def describe(self) -> str:
        if not self.found:
            return (f"patch setting: shipped ({self.held_out} good parts held out; choosing needs {MIN_HELD_OUT}, "
                    "about 100 good parts at the usual 10 %)")
        rows = ", ".join(f"{name} {found['caught']:.2f}" for name, found in self.found.items())
        why = ("catches the most synthetic defects above the held-out good parts" if self.chosen != "shipped" else
               "no other setting catches at least one more held-out image per kind")
        line = f"patch setting: {self.chosen} ({SETTING_HELP[self.chosen]}): {why} (share caught: {rows})"
        if self.finer is None:
            return line
        finer = self.finer
        size = f"{finer.resolved[0]} × {finer.resolved[1]} instead of {finer.base[0]} × {finer.base[1]}"
        against = f"share caught {finer.found['caught']:.2f} against {self.found[self.chosen]['caught']:.2f}"
        if finer.chosen:
            return f"{line}; working size {size}: it catches more ({against}); a part costs {finer.cost:.2g}× as much"
        return f"{line}; working size kept: {size} caught no more by one held-out image per kind ({against})"


def patchcore_model(cfg: RunConfig) -> PatchCoreConfig:
    if not isinstance(cfg.model, PatchCoreConfig):
        raise ConfigError(f"--features: sets PatchCore's patch setting; the model is '{cfg.model_name}'")
    return cfg.model


def apply_setting(model: PatchCoreConfig, setting: Setting) -> PatchCoreConfig:
    """`model` with `setting`; refused where the model already fixes the taps it would change."""
    if setting == "shipped":
        return model
    if setting == "sparse_bank":
        return dataclasses.replace(model, coreset_ratio=model.coreset_ratio / 10)
    if model.backbone.taps:
        raise ConfigError(f"--features {setting}: model.backbone.taps is set ({list(model.backbone.taps)}); "
                          "leave it empty, or drop --features")
    spec = backbone_spec(model.backbone.name)
    if setting not in spec.default_taps:
        raise ConfigError(f"--features {setting}: backbone {model.backbone.name} has no such taps "
                          f"(it offers {', '.join(offered_settings(model))})")
    return dataclasses.replace(model, backbone=dataclasses.replace(model.backbone, taps=spec.default_taps[setting]))


def offered_settings(model: PatchCoreConfig) -> list[Setting]:
    taps = backbone_spec(model.backbone.name).default_taps
    return [s for s in SETTINGS if s in ("shipped", "sparse_bank") or s in taps]


def candidates(cfg: RunConfig) -> dict[Setting, PatchCoreConfig]:
    """The settings to try for cfg's PatchCore; a config that cannot choose is refused here."""
    model = patchcore_model(cfg)
    if model.backbone.taps:
        raise ConfigError(f"--features auto: model.backbone.taps is set ({list(model.backbone.taps)}); "
                          "leave it empty to let the good parts choose, or pass --features shipped")
    return {s: apply_setting(model, s) for s in offered_settings(model)}


def choose_features(cfg: RunConfig, folder: Path, overwrite: bool = False) -> FeatureChoice:
    """Fit cfg's PatchCore once per candidate setting into `folder`/<setting> (data.validation_fraction
    of the good images held out, 10 % if it is 0) and return the one the ladder chooses
    (`engine.synthetic.choose_by_ladder`); then, where data.image_size is `auto`, the chosen setting
    once more on the finer working size, into `folder`/<setting>_finer, kept on the same terms.
    `folder`/choice.json records every candidate's figures. The shipped setting at the config's
    size, unfitted, when too few good parts are held out to tell settings apart."""
    settings = candidates(cfg)
    resolved_cfg, _ = resolve_working_size(cfg)  # image_size: auto → the folder's shape, once for every candidate
    holdout = dataclasses.replace(resolved_cfg.data, validation_fraction=cfg.data.validation_fraction or 0.1)
    bundle = build_datasets(holdout)  # the same images for every candidate: listed once
    held_out = len(bundle.validation)
    if held_out < MIN_HELD_OUT:
        return FeatureChoice("shipped", settings["shipped"], held_out, {}, cfg.data.image_size)
    found = {name: fit_and_ladder(resolved_cfg, model, holdout, bundle, folder / name, overwrite)
             for name, model in settings.items()}
    chosen: Setting = choose_by_ladder(found, "shipped")  # type: ignore[assignment]
    finer = _try_finer_size(cfg, as_hw(resolved_cfg.data.image_size), settings[chosen], found[chosen], holdout,
                            folder / f"{chosen}_{FINER}", overwrite)
    write_text_atomic(folder / CHOICE_FILE, json.dumps({
        "criterion": "share of held-out good parts with a synthetic defect pasted in that score above every clean "
                     f"held-out good part, mean over the ladder ({', '.join(LADDER)}) and the classes; the shipped "
                     "setting stays unless another catches at least one more held-out image per kind; then the "
                     f"chosen setting at {FINER_PIXELS}× the pixels, kept on the same terms",
        "chosen": chosen, "settings": {n: SETTING_HELP[n] for n in settings}, "found": found,
        "finer_size": None if finer is None else dataclasses.asdict(finer)}, indent=2))
    image_size = cfg.data.image_size
    if finer is not None and finer.chosen and isinstance(image_size, AutoSize):
        image_size = dataclasses.replace(image_size, pixels=finer.pixels)
    return FeatureChoice(chosen, settings[chosen], held_out, found, image_size, finer)


def _try_finer_size(cfg: RunConfig, base: tuple[int, int], model: PatchCoreConfig, base_found: dict[str, float],
                    holdout: DataConfig, output: Path, overwrite: bool) -> FinerSize | None:
    """`model` fitted on the finer working size with the same held-out parts; None where the size is
    the user's (data.image_size given) or the finer budget would pass the decoded-pixel cap."""
    asked = cfg.data.image_size
    if not isinstance(asked, AutoSize) or asked.pixels * FINER_PIXELS > MAX_IMAGE_PIXELS:
        return None
    pixels = round(asked.pixels * FINER_PIXELS)
    finer_cfg, _ = resolve_working_size(dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, image_size=dataclasses.replace(asked, pixels=pixels))))
    # the same split as the settings': it depends on the records and the seed, not on the size
    data = dataclasses.replace(finer_cfg.data, validation_fraction=holdout.validation_fraction)
    found = fit_and_ladder(finer_cfg, model, data, build_datasets(data), output, overwrite)
    won = choose_by_ladder({"base": base_found, FINER: found}, "base") == FINER
    return FinerSize(pixels, base, as_hw(finer_cfg.data.image_size), found, won)


def fit_and_ladder(cfg: RunConfig, model: PatchCoreConfig, holdout: DataConfig, bundle: DataBundle, output: Path,
                   overwrite: bool) -> dict[str, float]:
    """One candidate fitted with the hold-out, and its ladder criterion on the held-out parts."""
    candidate = dataclasses.replace(cfg, model=model, data=holdout, output_dir=str(output),
                                    eval=dataclasses.replace(cfg.eval, calibration=HoldOutCalibration()))
    with warnings.catch_warnings():  # a candidate's own threshold is never used: its warning would mislead
        warnings.simplefilter("ignore", CalibrationWarning)
        fitted = run_engine(candidate, overwrite=overwrite, evaluate_test=False, bundle=bundle)
    return ladder_criterion(fitted.model, fitted.bundle.validation, fitted.device,
                            candidate.data.eval_batch_size, candidate.train.seed)
