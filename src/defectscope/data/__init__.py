"""Data: layout readers, image decoding, transforms and the dataset (see each module)."""

from .config import MAX_IMAGE_PIXELS, AugmentConfig, DataConfig, SourceConfig, SplitConfig
from .dataset import (
    AnomalyDataset,
    DataBundle,
    RecordSplit,
    SkippedFilesWarning,
    build_datasets,
    build_records,
    hold_out,
)
from .errors import DataError
from .image_io import check_image_pixels, image_size, load_image, load_mask
from .layouts import (
    IMAGE_SUFFIXES,
    btad_records,
    folder_records,
    list_images,
    mtsd_records,
    mvtec_records,
    records_for,
    split_normals,
)
from .sample import Record, Sample
from .transforms import augment, resize_image, resize_mask

__all__ = [
    "AnomalyDataset",
    "AugmentConfig",
    "DataBundle",
    "DataConfig",
    "DataError",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "Record",
    "RecordSplit",
    "Sample",
    "SkippedFilesWarning",
    "SourceConfig",
    "SplitConfig",
    "augment",
    "btad_records",
    "check_image_pixels",
    "build_datasets",
    "build_records",
    "folder_records",
    "hold_out",
    "image_size",
    "list_images",
    "load_image",
    "load_mask",
    "mtsd_records",
    "mvtec_records",
    "records_for",
    "resize_image",
    "resize_mask",
    "split_normals",
]
