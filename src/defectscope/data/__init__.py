"""Data: layout readers, image decoding, transforms and the dataset (see each module).

The names below are imported on first use, so that the torch-free modules (`errors`, `limits`,
`discovery`, `config`, `image_io`'s numpy readers) can be imported on a machine without torch:
the dataset, the samples and the transforms need it, `defectscope predict model.onnx` does not.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name → the module of this package that defines it
_HOMES = {
    "AugmentConfig": "config", "DataConfig": "config", "SourceConfig": "config", "SplitConfig": "config",
    "MAX_IMAGE_PIXELS": "limits", "IMAGE_SUFFIXES": "limits",
    "AnomalyDataset": "dataset", "DataBundle": "dataset", "RecordSplit": "dataset", "SkippedFilesWarning": "dataset",
    "build_datasets": "dataset", "build_records": "dataset", "hold_out": "dataset",
    "DataError": "errors",
    "check_image_pixels": "image_io", "image_size": "image_io", "load_image": "image_io", "load_mask": "image_io",
    "btad_records": "layouts", "folder_records": "layouts", "list_images": "layouts", "mtsd_records": "layouts",
    "mvtec_records": "layouts", "records_for": "layouts", "split_normals": "layouts",
    "Record": "sample", "Sample": "sample",
    "augment": "transforms", "resize_image": "transforms", "resize_mask": "transforms",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = sorted(_HOMES)
