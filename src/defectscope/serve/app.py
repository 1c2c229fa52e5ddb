"""The HTTP service: `create_app(detector, settings)` → a FastAPI app with the page at `/`.

Uploads are read with limits enforced while they stream in (upload.py), checked from the
image header before decoding (images.py), then decoded and scored in worker threads so the
event loop keeps answering `/health` while a model runs. Requests carry image bytes only; no
request names a file on the server.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from defectscope.detection import Detection, DetectorLike
from defectscope.serve.images import check_content_type, decode_upload, overlay_png, probe_upload
from defectscope.serve.settings import ServeSettings
from defectscope.serve.upload import Part, UploadError, read_multipart
from defectscope.version import __version__

PAGE = Path(__file__).parent / "static" / "index.html"
# the page is one file with inline CSS/JS and data: / blob: images; nothing else may load
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'")


class ErrorBody(BaseModel):
    error: str  # short code: empty, too_large, too_many_pixels, not_an_image, wrong_content_type, bad_form, ...
    detail: str  # for a person: what was wrong and the limit it broke


class PredictResult(BaseModel):
    filename: str | None
    width: int
    height: int
    class_name: str
    score: float
    threshold: float | None
    normalized_score: float | None  # threshold at 0.5; see defectscope.engine.detector.normalized_score
    defective: bool | None
    verdict: str | None  # "DEFECT" or "OK"
    defect_area: float | None  # share of the image's pixels above the pixel threshold
    pixel_threshold: float | None
    overlay_png: str | None  # base64 PNG: heatmap over the input; absent with ?overlay=false
    seconds: float  # server time for this image: decode, score, overlay


class BatchResult(BaseModel):
    results: list[PredictResult]
    seconds: float


class Health(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    status: str
    model_name: str
    uptime_s: float
    images_scored: int
    requests_refused: int


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model_name: str
    class_names: list[str]
    image_size: int | list[int]  # the working size, one side or [height, width]
    image_threshold: float | None
    pixel_threshold: float | None
    defectscope_version: str
    limits: dict[str, int]


def _form_body(multiple: bool) -> dict[str, Any]:
    """OpenAPI text for the bodies we parse ourselves (FastAPI cannot see them)."""
    binary = {"type": "string", "format": "binary"}
    file_field = {"files": {"type": "array", "items": binary}} if multiple else {"file": binary}
    properties = {**file_field, "class_name": {"type": "string", "description": "needed for multi-class models"}}
    schema = {"type": "object", "required": list(file_field), "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "empty file, malformed form, missing field, unknown class"},
    413: {"model": ErrorBody, "description": "over the byte or decoded-pixel limit, or too many files"},
    415: {"model": ErrorBody, "description": "not multipart/form-data, or a part that is not an image type"},
    422: {"model": ErrorBody, "description": "not a readable image, or truncated image data"},
}


class Slots:
    """A counting semaphore that takes several slots at once, so batches cannot deadlock each other."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def take(self, count: int) -> Iterator[None]:
        count = min(count, self.capacity)
        with self._cond:
            self._cond.wait_for(lambda: self._free >= count)
            self._free -= count
        try:
            yield
        finally:
            with self._cond:
                self._free += count
                self._cond.notify_all()


def create_app(detector: DetectorLike, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving `detector`; limits from `settings` (ServeSettings() defaults)."""
    settings = settings or ServeSettings()
    info = detector.info()
    limits = asdict(settings)
    page = PAGE.read_text(encoding="utf-8")
    slots = Slots(settings.max_inflight_images)
    started = time.monotonic()
    counts = {"images_scored": 0, "requests_refused": 0}
    counts_lock = threading.Lock()

    app = FastAPI(
        title="defectscope",
        version=__version__,
        description=f"Unsupervised defect detection with a {info['model_name']} model: POST an image to "
                    "/predict, get its anomaly score against the calibrated threshold and a heatmap overlay.",
    )

    @app.exception_handler(UploadError)
    async def refused(request: Request, err: UploadError) -> JSONResponse:
        with counts_lock:
            counts["requests_refused"] += 1
        return JSONResponse({"error": err.code, "detail": err.message}, status_code=err.status)

    def check_class(class_name: str | None) -> str | None:
        names = detector.class_names
        if class_name is None and len(names) > 1:
            raise UploadError(400, "bad_class",
                              f"this model knows {len(names)} classes; send class_name, one of {names}")
        if class_name is not None and class_name not in names:
            raise UploadError(400, "bad_class", f"class_name {class_name!r} is not one of {names}")
        return class_name

    async def read_files(request: Request, names: tuple[str, ...], max_files: int, max_body: int,
                         ) -> tuple[list[Part], str | None]:
        parts = await read_multipart(request.headers.get("content-type", ""), request.headers.get("content-length"),
                                     request.stream(), settings.max_upload_bytes, max_files, max_body)
        files = [p for p in parts if p.name in names and p.filename is not None]
        extra = sorted({p.name for p in parts if p.name not in (*names, "class_name")})
        if extra:
            raise UploadError(400, "bad_form", f"unexpected form fields {extra}; send {names[0]!r} (and class_name)")
        if not files:
            raise UploadError(400, "bad_form", f"no file in form field {names[0]!r}")
        class_fields = [bytes(p.data).decode("utf-8", "replace").strip() for p in parts if p.name == "class_name"]
        for i, part in enumerate(files):
            label = f"file {i + 1} ({part.filename!r})" if len(files) > 1 else f"file {part.filename!r}"
            check_content_type(label, part.content_type)
        return files, check_class(class_fields[-1] if class_fields and class_fields[-1] else None)

    def result(part: Part, width: int, height: int, detection: Detection, image: np.ndarray, overlay: bool,
               seconds: float) -> PredictResult:
        pixel_threshold = info.get("pixel_threshold")
        png = None
        if overlay:
            high = pixel_threshold if pixel_threshold is not None else float(detection.anomaly_map.max())
            png = base64.b64encode(overlay_png(image, detection.anomaly_map, high, settings.max_overlay_side)).decode()
        verdict = None if detection.defective is None else ("DEFECT" if detection.defective else "OK")
        return PredictResult(
            filename=part.filename, width=width, height=height, class_name=detection.class_name,
            score=detection.score, threshold=detection.threshold, normalized_score=detection.normalized_score,
            defective=detection.defective, verdict=verdict, defect_area=detection.defect_area,
            pixel_threshold=pixel_threshold, overlay_png=png, seconds=seconds,
        )

    def score_files(files: list[Part], class_name: str | None, overlay: bool) -> list[PredictResult]:
        """Worker thread: header checks for every file first, then decode and score a few at a time."""
        labels = [f"file {i + 1} ({p.filename!r})" if len(files) > 1 else f"file {p.filename!r}"
                  for i, p in enumerate(files)]
        sizes = [probe_upload(p.data, label, settings.max_image_pixels) for p, label in zip(files, labels, strict=True)]
        results: list[PredictResult] = []
        step = settings.max_inflight_images
        for start in range(0, len(files), step):
            chunk = range(start, min(start + step, len(files)))
            with slots.take(len(chunk)):
                began = time.perf_counter()
                images = [decode_upload(files[i].data, labels[i], settings.max_image_pixels) for i in chunk]
                detections = detector.score(images, class_name)
                share = (time.perf_counter() - began) / len(chunk)
                for i, image, detection in zip(chunk, images, detections, strict=True):
                    t0 = time.perf_counter()
                    item = result(files[i], *sizes[i], detection, image, overlay, 0.0)
                    item.seconds = share + time.perf_counter() - t0
                    results.append(item)
            with counts_lock:
                counts["images_scored"] += len(chunk)
        return results

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"})

    @app.get("/health", response_model=Health, summary="liveness and counters")
    async def health() -> Health:
        with counts_lock:
            return Health(status="ok", model_name=info["model_name"], uptime_s=time.monotonic() - started, **counts)

    @app.get("/model", response_model=ModelInfo, summary="the model, its classes, thresholds and the service limits")
    async def model() -> ModelInfo:
        return ModelInfo(**info, limits=limits)

    @app.post("/predict", response_model=PredictResult, responses=ERRORS, openapi_extra=_form_body(False),
              summary="score one image (multipart field 'file')")
    async def predict(request: Request, overlay: bool = True) -> PredictResult:
        files, class_name = await read_files(request, ("file",), 1, settings.max_upload_bytes)
        return (await run_in_threadpool(score_files, files, class_name, overlay))[0]

    @app.post("/predict/batch", response_model=BatchResult, responses=ERRORS, openapi_extra=_form_body(True),
              summary=f"score up to {settings.max_batch_files} images (multipart field 'files', repeated)")
    async def predict_batch(request: Request, overlay: bool = True) -> BatchResult:
        began = time.perf_counter()
        files, class_name = await read_files(request, ("files", "file"), settings.max_batch_files,
                                             settings.max_batch_bytes)
        results = await run_in_threadpool(score_files, files, class_name, overlay)
        return BatchResult(results=results, seconds=time.perf_counter() - began)

    return app
