"""PatchCore's patch settings chosen per line from its good parts alone (`fit --features auto`).

Which patches catch most depends on the parts: on MTSD's textures the stride-32 block adds the
context that tells a blowhole from the grain, on MVTec's bottles and pills it costs a third of
the defects caught, and a sparser bank helps there instead (docs/results/backbones.md). No one
setting wins both, so a line chooses on its own images: each candidate is fitted with a hold-out
and scored by how many synthetic defects of the ladder (`engine.synthetic`) pasted into the
held-out good parts score above every clean one. No defect image and no test label is read.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from defectscope.config import ConfigError, HoldOutCalibration, RunConfig
from defectscope.data.dataset import build_datasets
from defectscope.engine.files import write_text_atomic
from defectscope.engine.run import run as run_engine
from defectscope.engine.synthetic import LADDER, ladder_criterion
from defectscope.engine.working_size import resolve_working_size
from defectscope.layers.backbones import backbone_spec
from defectscope.models.patchcore.config import PatchCoreConfig

Setting = Literal["shipped", "with_last", "first_three", "sparse_bank"]
# the shipped setting first: a tie keeps it
SETTINGS: tuple[Setting, ...] = ("shipped", "with_last", "first_three", "sparse_bank")
SETTING_HELP = {
    "shipped": "the last blocks at stride 8 and 16, the configured bank",
    "with_last": "the shipped taps and the last block at stride 32 (more context: textures)",
    "first_three": "taps at stride 4, 8 and 16 on a stride-4 grid (finer maps)",
    "sparse_bank": "the shipped taps, a tenth of the configured bank",
}
# fewer held-out good parts than this and one pasted defect moves the criterion by more than 10 %
MIN_HELD_OUT = 10
CHOICE_FILE = "choice.json"


@dataclass(frozen=True)
class FeatureChoice:
    chosen: Setting
    model: PatchCoreConfig  # the chosen setting applied to the config's model
    found: dict[str, dict[str, float]]  # setting → its ladder criterion (engine.synthetic.ladder_criterion)

    def describe(self) -> str:
        rows = ", ".join(f"{name} {found['caught']:.2f}" for name, found in self.found.items())
        return (f"patch setting: {self.chosen} ({SETTING_HELP[self.chosen]}) catches the most synthetic defects "
                f"above the held-out good parts (share caught: {rows})")


def apply_setting(model: PatchCoreConfig, setting: Setting) -> PatchCoreConfig:
    """cfg's PatchCore with `setting`; refused where the config already fixes what it would change."""
    if setting == "shipped":
        return model
    if model.backbone.taps and setting != "sparse_bank":
        raise ConfigError(f"--features {setting}: model.backbone.taps is set ({list(model.backbone.taps)}); "
                          "leave it empty, or drop --features")
    if setting == "sparse_bank":
        return dataclasses.replace(model, coreset_ratio=model.coreset_ratio / 10)
    spec = backbone_spec(model.backbone.name)
    if setting not in spec.default_taps:
        raise ConfigError(f"--features {setting}: backbone {model.backbone.name} has no such taps "
                          f"(it offers {', '.join(s for s in SETTINGS if s in spec.default_taps or s == 'shipped')})")
    return dataclasses.replace(model, backbone=dataclasses.replace(model.backbone, taps=spec.default_taps[setting]))


def candidates(cfg: RunConfig) -> dict[Setting, PatchCoreConfig]:
    """The settings to try for cfg's PatchCore; a config that cannot choose is refused here."""
    if not isinstance(cfg.model, PatchCoreConfig):
        raise ConfigError(f"--features: chooses PatchCore's patch settings; the model is '{cfg.model_name}'")
    if cfg.model.backbone.taps:
        raise ConfigError(f"--features auto: model.backbone.taps is set ({list(cfg.model.backbone.taps)}); "
                          "leave it empty to let the good parts choose, or pass --features shipped")
    spec = backbone_spec(cfg.model.backbone.name)
    offered = [s for s in SETTINGS if s in ("shipped", "sparse_bank") or s in spec.default_taps]
    return {s: apply_setting(cfg.model, s) for s in offered}


def choose_features(cfg: RunConfig, folder: Path, overwrite: bool = False) -> FeatureChoice | None:
    """Fit cfg's PatchCore once per candidate setting into `folder`/<setting> (data.validation_fraction
    of the good images held out, 10 % if it is 0) and return the one whose held-out parts best
    separate from the ladder's pasted defects; `folder`/choice.json records every candidate's
    figures. None when too few good parts are held out to tell the settings apart."""
    settings = candidates(cfg)
    cfg, _ = resolve_working_size(cfg)  # image_size: auto → the folder's shape, once for every candidate
    holdout = dataclasses.replace(cfg.data, validation_fraction=cfg.data.validation_fraction or 0.1)
    held_out = len(build_datasets(holdout).validation)
    if held_out < MIN_HELD_OUT:
        return None
    found: dict[str, dict[str, float]] = {}
    for name, model in settings.items():
        candidate = dataclasses.replace(cfg, model=model, data=holdout, output_dir=str(folder / name),
                                        eval=dataclasses.replace(cfg.eval, calibration=HoldOutCalibration()))
        fitted = run_engine(candidate, overwrite=overwrite, evaluate_test=False)
        found[name] = ladder_criterion(fitted.model, fitted.bundle.validation, fitted.device,
                                       candidate.data.eval_batch_size, candidate.train.seed)
    chosen = max(settings, key=lambda n: (found[n]["caught"], found[n]["auroc"], n == SETTINGS[0]))
    write_text_atomic(folder / CHOICE_FILE, json.dumps({
        "criterion": "share of held-out good parts with a synthetic defect pasted in that score above every clean "
                     f"held-out good part, mean over the ladder ({', '.join(LADDER)}) and the classes; "
                     "ties: the synthetic AUROC, then the shipped setting",
        "chosen": chosen, "settings": {n: SETTING_HELP[n] for n in settings}, "found": found}, indent=2))
    return FeatureChoice(chosen, settings[chosen], found)
