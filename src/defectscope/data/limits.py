"""Which image files defectscope reads, and how many pixels each reader accepts: one home for both.

A leaf module (standard library only), so the torch-free readers (`defectscope predict` with
onnxruntime, `defectscope serve model.onnx`) and the dataset share the same names and numbers.

Every cap is width x height, read from the file header before any pixel is decoded. They differ
because each reader holds a different number of decoded images at once and trusts its input
differently; all stay below Pillow's own decompression-bomb warning (about 89 M pixels), so no
accepted image makes Pillow warn.
"""

from __future__ import annotations

# what the layouts, `predict`'s folder search and the ground-truth rules count as an image file
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

# `data.max_image_pixels`, for training and test data: the dataset decodes one image at a time
# (per loader worker) and resizes it at once. 50 M admits a 4000 x 4000 camera image (16 M) and a
# 48 MP 8000 x 6000 sensor, and bounds one decoded image to 600 MB as the (3, H, W) float32 tensor
# the loaders return.
MAX_IMAGE_PIXELS = 50_000_000

# `defectscope predict --max-image-pixels`: lower than the dataset's because predict holds a whole
# batch (--batch-size, 8 by default) of decoded images and their full-size anomaly maps per call,
# 16 bytes a pixel (float32 RGB + float32 map): 8 x 40 M x 16 B is about 5 GB, twice that with its
# two calls at once on a CPU (--concurrent-calls 1 halves it), which a workstation still holds.
# Local files, chosen by the person running it, so the cap guards memory, not abuse.
PREDICT_MAX_IMAGE_PIXELS = 40_000_000

# `defectscope serve --max-image-pixels` (ServeSettings.max_image_pixels): the lowest, because the
# service decodes bytes from the network, from anyone who can reach it, and holds up to
# max_inflight_images (4) images across all requests: 4096² admits a 4000 x 4000 image and keeps
# one decoded image near 200 MB as float32 RGB.
SERVE_MAX_IMAGE_PIXELS = 4096 * 4096
