"""The model registry: one literal dict, no import-time side effects."""

from __future__ import annotations

from typing import Any

from defectscope.models.ae_ssim.config import AESSIMConfig
from defectscope.models.ae_ssim.model import AESSIM
from defectscope.models.base import AnomalyModel, LossParts, ModelOutput, OptimizerGroup, Phase, StepContext
from defectscope.models.fader.config import FADeRConfig
from defectscope.models.fader.model import FADeR
from defectscope.models.mean_image.config import MeanImageConfig
from defectscope.models.mean_image.model import MeanImage
from defectscope.models.padim.config import PaDiMConfig
from defectscope.models.padim.model import PaDiM
from defectscope.models.patchcore.config import PatchCoreConfig
from defectscope.models.patchcore.model import PatchCore
from defectscope.models.pvqae.config import PVQAEConfig
from defectscope.models.pvqae.model import PVQAE
from defectscope.models.vitae.config import ViTAEConfig
from defectscope.models.vitae.model import ViTAE
from defectscope.models.vq_e.config import VQEConfig
from defectscope.models.vq_e.model import VQE

MODELS: dict[str, tuple[type[AnomalyModel], type]] = {
    "ae_ssim": (AESSIM, AESSIMConfig),
    "vq_e": (VQE, VQEConfig),
    "pvqae": (PVQAE, PVQAEConfig),
    "patchcore": (PatchCore, PatchCoreConfig),
    "padim": (PaDiM, PaDiMConfig),
    "fader": (FADeR, FADeRConfig),
    "vitae": (ViTAE, ViTAEConfig),
    "mean_image": (MeanImage, MeanImageConfig),
}


def _registered(name: str) -> tuple[type[AnomalyModel], type]:
    if name not in MODELS:
        raise KeyError(f"unknown model '{name}' (known: {', '.join(sorted(MODELS))})")
    return MODELS[name]


def model_config_class(name: str) -> type:
    return _registered(name)[1]


def model_class(name: str) -> type[AnomalyModel]:
    return _registered(name)[0]


def create_model(
    name: str, config: Any = None, image_size: int | tuple[int, int] = 256, num_classes: int = 1
) -> AnomalyModel:
    """Build a registered model from its config dataclass (defaults when config is None).

    `image_size` is what the model sees: a side, or (height, width) for the models whose class says
    `rectangular = True`. Settings that do not fit together raise ValueError naming the setting.
    """
    model_cls = model_class(name)
    if isinstance(image_size, tuple | list):
        height, width = image_size
        if height == width:
            image_size = int(height)
        elif not model_cls.rectangular:
            raise ValueError(f"data.image_size {list(image_size)}: {name} needs square inputs; give one number, "
                             "or keep [height, width] and add data.tiling (square tiles), or use mean_image, "
                             "padim or patchcore")
        else:
            image_size = (int(height), int(width))
    return model_cls(config if config is not None else model_config_class(name)(), image_size, num_classes)


__all__ = [
    "MODELS", "AnomalyModel", "LossParts", "ModelOutput", "OptimizerGroup", "Phase", "StepContext", "create_model",
    "model_class", "model_config_class",
]
