"""The HTTP service: `create_app(detector, settings)` → a FastAPI app with the page at `/`.

Uploads are read with limits enforced while they stream in (upload.py), checked from the
image header before decoding (images.py), then decoded and scored in worker threads so the
event loop keeps answering `/health` while a model runs; image slots are taken first come,
first served (slots.py), and the parts of requests that wait for the model together go through
it in one call (coalesce.py). Requests carry image bytes only; no request names a file on the
server. Every answer, refusals included, has the shape /openapi.json declares (schema.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from defectscope.detection import Detection, DetectorLike
from defectscope.serve.coalesce import Coalescer
from defectscope.serve.drift import DriftWatch
from defectscope.serve.feedback import Feedback, FeedbackError
from defectscope.serve.images import OverlayFormat, check_content_type, decode_upload, overlay_bytes, probe_upload
from defectscope.serve.schema import BatchResult, ErrorBody, Health, MarkedGood, ModelInfo, PredictResult
from defectscope.serve.settings import ServeSettings
from defectscope.serve.slots import HeapTrim, Slots
from defectscope.serve.upload import Part, UploadError, read_multipart
from defectscope.version import __version__

PAGE = Path(__file__).parent / "static" / "index.html"
# the page is one file with inline CSS/JS and data: / blob: images; nothing else may load
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'")
PROMISE_KEYS = ("false_alarm_rate", "false_alarm_bound", "held_out_normals")


def _form_body(multiple: bool) -> dict[str, Any]:
    """OpenAPI text for the bodies we parse ourselves (FastAPI cannot see them)."""
    binary = {"type": "string", "format": "binary", "description": "an image file part (it must have a filename)"}
    file_field = {"files": {"type": "array", "items": binary}} if multiple else {"file": binary}
    properties = {**file_field, "class_name": {"type": "string", "description": "needed for multi-class models"}}
    schema = {"type": "object", "required": list(file_field), "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "empty file, malformed form, missing field or filename, unknown class"},
    413: {"model": ErrorBody, "description": "over the byte or decoded-pixel limit, or too many files"},
    415: {"model": ErrorBody, "description": "not multipart/form-data, or a part that is not an image type"},
    422: {"model": ErrorBody, "description": "not a readable image, truncated image data, or a query parameter "
                                             "that is not what it must be (?overlay=maybe, ?overlay_format=gif)"},
    500: {"model": ErrorBody, "description": "the model failed on this request"},
}
FEEDBACK_ERRORS = {**ERRORS, 409: {"model": ErrorBody, "description": "as many parts taken in as --max-feedback "
                                                                      "allows"},
                   403: {"model": ErrorBody, "description": "no X-Defectscope-Feedback: 1 header, or another "
                                                            "site's page (Origin) sent it"}}
# a header a form cannot set: a page of another site that posts to /feedback must ask the browser
# first (CORS preflight), which this service never allows, so it cannot teach the model a defect
FEEDBACK_HEADER = "X-Defectscope-Feedback"
OverlayParam = Annotated[bool, Query(description="include the heatmap over the input (false: verdict and scores "
                                                 "only, cheaper)")]
OverlayFormatParam = Annotated[OverlayFormat, Query(description="the heatmap as a PNG (field overlay_png) or a JPEG "
                                                                "(overlay_jpeg: a fifth of the bytes, what the page "
                                                                "asks for); checked, but unused, with overlay=false")]
# Starlette's own refusals (unknown path, wrong method), in the same shape
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(error=code, detail=detail).model_dump(), status_code=status,  # type: ignore[arg-type]
                        headers=headers)


def _validation_detail(err: RequestValidationError) -> str:
    """FastAPI's error list as one sentence per problem: where, what was sent, what it must be."""
    problems = []
    for item in err.errors():
        loc = [str(x) for x in item.get("loc", ())]
        where = f"{loc[0]} parameter {loc[-1]!r}" if len(loc) > 1 else "request"
        sent = f" (got {item['input']!r})" if "input" in item and not isinstance(item["input"], dict) else ""
        hint = ": send true or false" if item.get("type") == "bool_parsing" else ""
        problems.append(f"{where}: {item.get('msg', 'invalid')}{sent}{hint}")
    return "; ".join(problems) or "invalid request"


def _verdict(detection: Detection) -> str | None:
    return None if detection.defective is None else ("DEFECT" if detection.defective else "OK")


def create_app(detector: DetectorLike, settings: ServeSettings | None = None, trim_heap: bool = True,
               feedback: Feedback | None = None) -> FastAPI:
    """A FastAPI app serving `detector`; limits from `settings` (ServeSettings() defaults).

    `trim_heap`: after a burst, once idle, give freed heap pages back to the system (glibc only; slots.py).
    `feedback`: where parts marked good are kept and taken in (POST /feedback); None leaves the model fixed.
    """
    settings = settings or ServeSettings()
    info = detector.info()
    model_info = ModelInfo(**info, limits=asdict(settings), feedback=feedback is not None)  # type: ignore[arg-type]
    page = PAGE.read_text(encoding="utf-8")
    slots = Slots(settings.max_inflight_images)
    # the parts of requests that wait for the model together go through it in one call
    coalescer = Coalescer(detector.score, settings.max_inflight_images, settings.concurrent_calls)
    heap = HeapTrim(slots)
    promise_of = getattr(detector, "promise", None)
    # what the threshold of each class promises (a per-class calibration gives each its own)
    promises = {name: {k: (promise_of(name) if promise_of else info).get(k) for k in PROMISE_KEYS}
                for name in detector.class_names}
    drift = DriftWatch(settings.drift_window, promises)
    started = time.monotonic()
    counts = {"images_scored": 0, "requests_refused": 0}
    counts_lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None
        if trim_heap and heap.available:
            async def trimmer() -> None:
                while True:
                    await asyncio.sleep(heap.interval / 2)
                    await run_in_threadpool(heap.maybe_trim)

            task = asyncio.create_task(trimmer())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()

    app = FastAPI(
        title="defectscope",
        version=__version__,
        lifespan=lifespan,
        description=f"Unsupervised defect detection with a {info['model_name']} model: POST an image to "
                    "/predict, get its anomaly score against the calibrated threshold, what that threshold "
                    "promises, and a heatmap overlay. Every error answers an ErrorBody.",
    )

    def refuse(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        with counts_lock:
            counts["requests_refused"] += 1
        return _error(status, code, detail, headers)

    @app.exception_handler(UploadError)
    async def refused(request: Request, err: UploadError) -> JSONResponse:
        return refuse(err.status, err.code, err.message)

    @app.exception_handler(FeedbackError)
    async def feedback_refused(request: Request, err: FeedbackError) -> JSONResponse:
        return refuse(err.status, err.code, err.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return refuse(422, "bad_parameter", _validation_detail(err))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(err.status_code, "http_error")
        detail = str(err.detail)
        if err.status_code == 404:
            detail = f"no such path {request.url.path!r}: see /openapi.json"
        elif err.status_code == 405:
            allow = {k.lower(): v for k, v in (err.headers or {}).items()}.get("allow")
            detail = f"{request.method} is not allowed on {request.url.path!r}" + (f"; use {allow}" if allow else "")
        return refuse(err.status_code, code, detail, err.headers)

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        return _error(500, "internal", f"the service failed on this request ({type(err).__name__}: {err})"[:500])

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
                                     request.stream(), settings.max_upload_bytes, max_files, max_body, names)
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

    def result(filename: str | None, width: int, height: int, detection: Detection, image: np.ndarray,
               overlay: OverlayFormat | None) -> PredictResult:
        pixel_threshold = info.get("pixel_threshold")
        pictures: dict[str, str | None] = {"png": None, "jpeg": None}
        if overlay is not None:
            high = pixel_threshold if pixel_threshold is not None else float(detection.anomaly_map.max())
            pictures[overlay] = base64.b64encode(overlay_bytes(image, detection.anomaly_map, high,
                                                               settings.max_overlay_side, overlay)).decode()
        verdict = _verdict(detection)
        return PredictResult(
            filename=filename, width=width, height=height, class_name=detection.class_name,
            score=detection.score, threshold=detection.threshold, normalized_score=detection.normalized_score,
            defective=detection.defective, verdict=verdict, defect_area=detection.defect_area,
            pixel_threshold=pixel_threshold, overlay_png=pictures["png"], overlay_jpeg=pictures["jpeg"], seconds=0.0,
            **promises.get(detection.class_name, {k: None for k in PROMISE_KEYS}),
        )

    def score_files(files: list[Part], class_name: str | None, overlay: OverlayFormat | None) -> list[PredictResult]:
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
                for i in chunk:
                    files[i].data = bytearray()  # decoded: the upload's bytes are not needed any more
                detections = coalescer.score(images, class_name)
                share = (time.perf_counter() - began) / len(chunk)
                for i, image, detection in zip(chunk, images, detections, strict=True):
                    t0 = time.perf_counter()
                    item = result(files[i].filename, *sizes[i], detection, image, overlay)
                    item.seconds = share + time.perf_counter() - t0
                    results.append(item)
                del images, detections  # the slot bounds decoded images: none may outlive it
            drift.add((r.class_name, r.defective) for r in results[-len(chunk):])
            with counts_lock:
                counts["images_scored"] += len(chunk)
            heap.worked()
        return results

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"})

    @app.get("/health", response_model=Health, operation_id="health",
             summary="liveness, counters, and the flagged share of recent parts against the promise")
    async def health() -> Health:
        with counts_lock:
            snapshot = dict(counts)
        status = drift.status()
        warnings = [s["warning"] for s in status if s["warning"]]
        return Health(status="ok", model_name=info["model_name"], uptime_s=time.monotonic() - started,
                      drift=status, warning=" ".join(warnings) or None,
                      parts_marked_good=feedback.parts_kept if feedback else 0, **snapshot)  # type: ignore[arg-type]

    @app.get("/model", response_model=ModelInfo, operation_id="model_info",
             summary="the model, its classes, thresholds and what they promise, and the service limits")
    async def model() -> ModelInfo:
        return model_info

    @app.post("/predict", response_model=PredictResult, responses=ERRORS, openapi_extra=_form_body(False),
              operation_id="predict", summary="score one image (multipart field 'file')")
    async def predict(request: Request, overlay: OverlayParam = True, overlay_format: OverlayFormatParam = "png",
                      ) -> PredictResult:
        files, class_name = await read_files(request, ("file",), 1, settings.max_upload_bytes)
        return (await run_in_threadpool(score_files, files, class_name, overlay_format if overlay else None))[0]

    @app.post("/predict/batch", response_model=BatchResult, responses=ERRORS, openapi_extra=_form_body(True),
              operation_id="predict_batch",
              summary=f"score up to {settings.max_batch_files} images (multipart field 'files', repeated)")
    async def predict_batch(request: Request, overlay: OverlayParam = True, overlay_format: OverlayFormatParam = "png",
                            ) -> BatchResult:
        began = time.perf_counter()
        files, class_name = await read_files(request, ("files", "file"), settings.max_batch_files,
                                             settings.max_batch_bytes)
        results = await run_in_threadpool(score_files, files, class_name, overlay_format if overlay else None)
        return BatchResult(results=results, seconds=time.perf_counter() - began)

    if feedback is not None:
        def mark(file: Part, class_name: str | None) -> MarkedGood:
            began = time.perf_counter()
            label = f"file {file.filename!r}"
            probe_upload(file.data, label, settings.max_image_pixels)
            with slots.take(1):
                image = decode_upload(file.data, label, settings.max_image_pixels)
                marked = feedback.mark_good(bytes(file.data), image, class_name)
            after = marked.detection_after
            return MarkedGood(
                filename=file.filename, class_name=marked.class_name, score_before=marked.detection_before.score,
                score_after=after.score, threshold=after.threshold,
                verdict_after=_verdict(after),
                changes={k: list(v) for k, v in marked.changes.items()}, kept_as=marked.kept_as,
                already_kept=marked.already_kept, parts_kept=marked.parts_kept, seconds=time.perf_counter() - began)

        @app.post("/feedback", response_model=MarkedGood, responses=FEEDBACK_ERRORS, openapi_extra=_form_body(False),
                  operation_id="mark_good",
                  summary="take a flagged part into the model as good (multipart field 'file'; the threshold stays)")
        async def mark_good(request: Request) -> MarkedGood:
            if request.headers.get(FEEDBACK_HEADER) != "1":
                raise UploadError(403, "forbidden", f"/feedback needs the header {FEEDBACK_HEADER}: 1 (the page "
                                                    "sends it; a form posted from another site cannot)")
            origin = request.headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
                raise UploadError(403, "forbidden", f"/feedback from the page of {origin[:200]!r}: only this "
                                                    "service's own page may mark parts good")
            files, class_name = await read_files(request, ("file",), 1, settings.max_upload_bytes)
            return await run_in_threadpool(mark, files[0], class_name)

    app.state.slots, app.state.heap, app.state.drift, app.state.coalescer = slots, heap, drift, coalescer
    return app
