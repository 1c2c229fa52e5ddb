"""PatchCore's patch features chosen per line from its good parts alone (`fit --choose-features`).

Which taps catch most depends on the parts: on MTSD's textures the stride-32 block adds the
context that tells a blowhole from the grain, on MVTec's objects the shipped taps are best
(docs/results/backbones.md). No one setting wins both, so a line chooses on its own images:
each candidate is fitted with a hold-out, and scored by how many synthetic defects of the ladder
(`engine.synthetic`) pasted into the held-out good parts it scores above every clean one. No
defect image and no test label is read.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from defectscope.config import ConfigError, HoldOutCalibration, RunConfig
from defectscope.engine.files import write_text_atomic
from defectscope.engine.run import run as run_engine
from defectscope.engine.synthetic import LADDER, ladder_criterion
from defectscope.layers.backbones import TapSet, backbone_spec
from defectscope.models.patchcore.config import PatchCoreConfig

# the shipped taps first: a tie keeps them
FEATURE_SETS: tuple[TapSet, ...] = ("middle", "with_last", "first_three")
CHOICE_FILE = "choice.json"


@dataclass(frozen=True)
class FeatureChoice:
    chosen: TapSet
    taps: tuple[int, ...]
    found: dict[str, dict[str, float]]  # feature set → its ladder criterion (engine.synthetic.ladder_criterion)

    def describe(self) -> str:
        rows = ", ".join(f"{name} {found['caught']:.2f}" for name, found in self.found.items())
        return (f"patch features: {self.chosen} (taps {list(self.taps)}) catches the most synthetic defects "
                f"above the held-out good parts ({rows})")


def feature_candidates(cfg: RunConfig) -> dict[TapSet, tuple[int, ...]]:
    """The feature sets to try for cfg's PatchCore; a config that cannot choose is refused here."""
    if not isinstance(cfg.model, PatchCoreConfig):
        raise ConfigError(f"--choose-features: chooses PatchCore's patch features; the model is '{cfg.model_name}'")
    if cfg.model.backbone.taps:
        raise ConfigError(f"--choose-features: model.backbone.taps is set ({list(cfg.model.backbone.taps)}); "
                          "leave it empty to let the good parts choose, or drop --choose-features")
    spec = backbone_spec(cfg.model.backbone.name)
    candidates = {name: spec.default_taps[name] for name in FEATURE_SETS if name in spec.default_taps}
    if len(candidates) < 2:
        raise ConfigError(f"--choose-features: backbone {cfg.model.backbone.name} offers one feature set only")
    return candidates


def choose_features(cfg: RunConfig, folder: Path, overwrite: bool = False) -> FeatureChoice:
    """Fit cfg's PatchCore once per candidate feature set into `folder`/<set> (10 % of the good
    images held out) and return the set whose held-out parts best separate from the ladder's
    pasted defects; `folder`/choice.json records every candidate's figures."""
    candidates = feature_candidates(cfg)
    assert isinstance(cfg.model, PatchCoreConfig)
    holdout = dataclasses.replace(cfg.data, validation_fraction=cfg.data.validation_fraction or 0.1)
    found: dict[str, dict[str, float]] = {}
    for name, taps in candidates.items():
        model = dataclasses.replace(cfg.model, backbone=dataclasses.replace(cfg.model.backbone, taps=taps))
        candidate = dataclasses.replace(cfg, model=model, data=holdout, output_dir=str(folder / name),
                                        eval=dataclasses.replace(cfg.eval, calibration=HoldOutCalibration()))
        fitted = run_engine(candidate, overwrite=overwrite, evaluate_test=False)
        found[name] = ladder_criterion(fitted.model, fitted.bundle.validation, fitted.device,
                                       candidate.data.eval_batch_size, candidate.train.seed)
    chosen = max(candidates, key=lambda n: (found[n]["caught"], found[n]["auroc"], n == FEATURE_SETS[0]))
    choice = FeatureChoice(chosen, candidates[chosen], found)
    write_text_atomic(folder / CHOICE_FILE, json.dumps({
        "criterion": "share of held-out good parts with a synthetic defect pasted in that score above every clean "
                     f"held-out good part, mean over the ladder ({', '.join(LADDER)}) and the classes; "
                     "ties: the synthetic AUROC, then the shipped taps",
        "chosen": chosen, "taps": list(choice.taps), "candidates": {n: list(t) for n, t in candidates.items()},
        "found": found}, indent=2))
    return choice
