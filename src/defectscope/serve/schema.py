"""The service's answers as typed models: what /openapi.json declares is what every endpoint sends.

Every key of `detector.info()` (defectscope.scoring.info.detector_info) has a field in
`ModelInfo`; a test checks that for the torch and the ONNX detector, so a key added there
without one here fails CI instead of going out undeclared (unknown keys are dropped, never sent).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# every `error` code the service answers with; docs/deploy.md's table says when each is sent
ErrorCode = Literal[
    "empty", "bad_form", "no_filename", "bad_class", "bad_parameter", "too_large", "too_many_pixels",
    "too_many_files", "wrong_content_type", "not_an_image", "not_found", "method_not_allowed", "http_error",
    "feedback_full", "forbidden", "internal",
]


class Model(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), extra="ignore")


class ErrorBody(Model):
    """Every refusal and failure, whatever its status."""

    error: ErrorCode = Field(description="short code for a program")
    detail: str = Field(description="for a person: what was wrong and the limit it broke")


# what the threshold promises, in every answer that carries a verdict or a threshold
RATE = Field(description="the stated rate α the threshold was chosen for (eval.false_alarm_rate)")
BOUND = Field(description="the promise: a good part like the held-out ones is flagged with probability at most "
                          "this; equals the stated rate when held_out_normals ≥ 1/α − 1, else 1/(n + 1)")
HELD_OUT = Field(description="n, the held-out normal images the threshold was set on")


class PredictResult(Model):
    filename: str | None = Field(description="the upload's file name, echoed (up to 255 characters)")
    width: int
    height: int
    class_name: str
    score: float = Field(description="the model's raw image score")
    threshold: float | None = Field(description="the image threshold of this class: a score above it is a DEFECT")
    false_alarm_rate: float | None = RATE
    false_alarm_bound: float | None = BOUND
    held_out_normals: int | None = HELD_OUT
    normalized_score: float | None = Field(description="score on [0, 1] with the threshold at 0.5")
    defective: bool | None
    verdict: Literal["DEFECT", "OK"] | None
    defect_area: float | None = Field(description="share of the image's pixels above the pixel threshold")
    pixel_threshold: float | None
    overlay_png: str | None = Field(description="base64 PNG: heatmap over the input; null with ?overlay=false "
                                                "or ?overlay_format=jpeg")
    overlay_jpeg: str | None = Field(description="base64 JPEG of the same heatmap with ?overlay_format=jpeg "
                                                 "(a fifth of the PNG's bytes, cheaper to make); else null")
    seconds: float = Field(description="server time for this image: decode, score, overlay")


class BatchResult(Model):
    results: list[PredictResult] = Field(description="one per file, in upload order")
    seconds: float


class MarkedGood(Model):
    """A part taken into the served model as good (serve --allow-feedback)."""

    filename: str | None = Field(description="the upload's file name, echoed (up to 255 characters)")
    class_name: str
    score_before: float = Field(description="its image score before it was taken in")
    score_after: float = Field(description="its image score now (PatchCore: 0, every patch is in the bank)")
    threshold: float | None = Field(description="the threshold, unchanged: it was set on other good parts")
    verdict_after: Literal["DEFECT", "OK"] | None
    changes: dict[str, list[float]] = Field(description="what changed in the model: name → [before, after], "
                                                        "e.g. bank_size, samples")
    kept_as: str = Field(description="the part's file under the feedback folder, named by its content's digest")
    already_kept: bool = Field(description="the same file was marked before: nothing changed")
    parts_kept: int = Field(description="parts in the feedback folder, this session's and earlier ones")
    seconds: float


class DriftStatus(Model):
    """The flagged share of one class's last `window` scored parts against its promise."""

    class_name: str
    window: int = Field(description="how many of the latest scored parts are kept (serve --drift-window)")
    scored: int = Field(description="parts in the window now (≤ window)")
    flagged: int
    flagged_share: float | None = Field(description="flagged / scored; null before the first part")
    interval: list[float] | None = Field(
        description="[low, high]: exact binomial (Clopper–Pearson) interval of the flagged share",
        min_length=2, max_length=2)
    confidence: float
    false_alarm_rate: float | None = RATE
    false_alarm_bound: float | None = BOUND
    held_out_normals: int | None = HELD_OUT
    warning: str | None = Field(description="set when the interval's low end is above false_alarm_bound")


class Health(Model):
    status: Literal["ok"]
    model_name: str
    uptime_s: float
    images_scored: int
    requests_refused: int
    parts_marked_good: int = Field(description="parts taken in through /feedback (0 unless --allow-feedback)")
    drift: list[DriftStatus] = Field(description="one entry per class")
    warning: str | None = Field(description="the drift warnings of all classes, or null")


class NoTiles(Model):
    kind: Literal["none"]


class Tiles(Model):
    kind: Literal["tiles"]
    tile: int
    stride: int
    merge: Literal["mean", "max"]


class ServeLimits(Model):
    """The service's settings (defectscope.serve.settings.ServeSettings), one field each."""

    max_upload_bytes: int
    max_image_pixels: int
    max_batch_files: int
    max_batch_bytes: int
    max_overlay_side: int
    max_inflight_images: int
    concurrent_calls: int
    drift_window: int


class ModelInfo(Model):
    model_name: str
    class_names: list[str]
    image_size: int | list[int] = Field(description="the working size, one side or [height, width]")
    resize: Literal["stretch", "keep_aspect", "none"]
    tiling: Annotated[NoTiles | Tiles, Field(discriminator="kind")]
    image_threshold: float | None = Field(description="the pooled image threshold")
    pixel_threshold: float | None
    image_score_mean: float | None = Field(description="mean score of the held-out normal images")
    image_score_std: float | None
    false_alarm_rate: float | None = RATE
    false_alarm_bound: float | None = BOUND
    held_out_normals: int | None = HELD_OUT
    pixel_false_alarm_rate: float | None
    class_thresholds: dict[str, float] | None = Field(description="each class's own threshold, when calibrated "
                                                                  "per class")
    map_standardization: bool = Field(description="each map position scored against its normal mean and spread")
    step: int = Field(description="the training step the weights come from")
    device: str
    backend: Literal["torch", "onnxruntime"]
    threads: int = Field(description="the runtime's threads for one network call (intra-op)")
    feature_runtime: Literal["torch", "onnxruntime"] = Field(
        description="what computes the network's features: a checkpoint's frozen backbone runs in onnxruntime where "
                    "it is installed (serve --feature-runtime); an exported model runs wholly in onnxruntime")
    defectscope_version: str
    exported_by: str | None = Field(None, description="ONNX only: the defectscope version that exported it")
    checkpoint_format: str | None = Field(None, description="ONNX only")
    exporter: str | None = Field(None, description="ONNX only: dynamo or torchscript")
    opset: int | None = Field(None, description="ONNX only")
    limits: ServeLimits
    feedback: bool = Field(description="POST /feedback takes a flagged part into the model as good "
                                       "(serve --allow-feedback)")
