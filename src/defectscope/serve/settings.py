"""The service's limits, in one frozen dataclass the verb fills from its flags."""

from __future__ import annotations

from dataclasses import dataclass, fields

from defectscope.data.limits import SERVE_MAX_IMAGE_PIXELS

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    # a 4000x4000 PNG of a real photo is ~20-30 MB, a JPEG a few MB; 32 MiB admits both
    max_upload_bytes: int = 32 * MIB
    # decoded-pixel cap read from the header before decoding (decompression bombs): 4096²; why it
    # is lower than predict's and the dataset's: defectscope/data/limits.py
    max_image_pixels: int = SERVE_MAX_IMAGE_PIXELS
    max_batch_files: int = 16
    # a whole /predict/batch body; every file in it still obeys max_upload_bytes
    max_batch_bytes: int = 64 * MIB
    # the overlay (PNG or JPEG) is drawn at the input's size, shrunk to fit this longest side, so a
    # response stays a few MB whatever the upload
    max_overlay_side: int = 1024
    # images decoded and scored at once, across requests: bounds memory (each holds up to
    # max_image_pixels x 12 bytes as float32 RGB) whatever the calls at once (concurrent_calls);
    # taken first come, first served, so a batch waits its turn but is never overtaken (slots.py)
    max_inflight_images: int = 4
    # score calls that run at once, each on a batch of waiting requests; the images of all of them
    # together stay within max_inflight_images
    concurrent_calls: int = 1
    # the verdicts of the last this-many scored parts, per class: /health compares their flagged
    # share with the promised false-alarm bound (drift.py). Against a 1 % bound, 500 parts warn
    # from 11 flagged (2.2 %) on, 100 parts only from 4 (4 %)
    drift_window: int = 500

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"serve setting {f.name} must be a positive integer, got {value!r}")
