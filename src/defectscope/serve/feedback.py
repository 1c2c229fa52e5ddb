"""`serve --allow-feedback DIR`: an operator marks a flagged part as good, and the served model takes it in.

The part joins the model as `defectscope accept` would add it (PatchCore's bank, PaDiM's and the
mean image's statistics) and its file is kept in DIR/<class>/, named by its content's digest, so
the same part is taken once. The checkpoint on disk is never touched: a restart with the same DIR
takes every kept part in again, and `defectscope accept RUN DIR/<class>` makes them part of the
checkpoint (then start the next session with an empty DIR). The threshold stays, as with accept:
its held-out scores are other good parts'.

Off by default: anyone who can reach the service could teach it that a defect is normal.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from defectscope.detection import Detection

# the suffix a kept part gets, from its bytes (the upload's name is not trusted): the types
# `defectscope accept` and the folder readers take; a GIF, WebP or PPM upload is kept as a PNG
SUFFIXES = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"BM": ".bmp", b"II*\x00": ".tif", b"MM\x00*": ".tif"}
# one class per sub-folder: the names a file system can hold for any class name
UNSAFE = '/\\:*?"<>|\0'


class FeedbackError(Exception):
    """A mark-as-good request the service cannot take; `code` and `status` as the service answers them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class AbsorbingDetector(Protocol):
    class_names: list[str]

    def absorb(self, images: list[np.ndarray], class_name: str | None = None) -> dict[str, tuple[float, float]]: ...

    def score(self, images: list[np.ndarray], class_name: str | None = None) -> list[Detection]: ...


@dataclass(frozen=True)
class Marked:
    """One part taken in: its scores before and after, what changed in the model, where its file is kept."""

    class_name: str
    detection_before: Detection
    detection_after: Detection
    changes: dict[str, tuple[float, float]]
    kept_as: str  # relative to the feedback folder
    already_kept: bool
    parts_kept: int


def _sync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform whose folders cannot be opened (Windows): the rename is what it is
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def png_bytes(image: np.ndarray) -> bytes:
    """An (H, W, 3) float image in [0, 1] as an 8-bit PNG (exact for the 8-bit images those formats carry)."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def folder_name(class_name: str) -> str:
    """A class's sub-folder; a name a file system would misread is spelled by its digest."""
    if class_name in ("", ".", "..") or any(c in UNSAFE for c in class_name) or len(class_name.encode()) > 200:
        return "class-" + hashlib.sha256(class_name.encode()).hexdigest()[:16]
    return class_name


class Feedback:
    """The folder of parts marked good and the served model that took them in, changed one part at a time."""

    def __init__(self, detector: AbsorbingDetector, folder: Path, max_parts: int) -> None:
        self.detector, self.folder, self.max_parts = detector, Path(folder), max_parts
        self._lock = threading.Lock()
        self._kept = 0

    def restore(self, decode: Callable[[bytes, str], np.ndarray]) -> int:
        """Take in the parts an earlier session kept (DIR/<class>/*); returns how many. Errors name the file."""
        if self.folder.exists() and not self.folder.is_dir():
            raise FeedbackError(500, "internal", f"--allow-feedback {self.folder}: exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        known = {folder_name(name): name for name in self.detector.class_names}
        kept: list[tuple[Path, str]] = []
        for entry in sorted(self.folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if not entry.is_dir() or entry.name not in known:
                raise FeedbackError(500, "internal", f"--allow-feedback {self.folder}: {entry.name!r} is not a "
                                    f"folder of one of the model's classes {sorted(known)}; this folder belongs "
                                    "to another model, or was edited by hand")
            for file in sorted(entry.iterdir()):
                if file.name.startswith(".") and file.name.endswith(".tmp"):
                    file.unlink(missing_ok=True)  # a part a kill interrupted while it was written: never taken in
                elif file.is_file() and not file.name.startswith("."):
                    kept.append((file, known[entry.name]))
        if len(kept) > self.max_parts:  # counted before any is taken in
            raise FeedbackError(500, "internal", f"--allow-feedback {self.folder}: holds {len(kept)} parts, more "
                                f"than --max-feedback {self.max_parts}")
        for file, name in kept:
            self.detector.absorb([decode(file.read_bytes(), str(file))], name if len(known) > 1 else None)
            self._kept += 1
        return self._kept

    @property
    def parts_kept(self) -> int:
        return self._kept

    def mark_good(self, data: bytes, image: np.ndarray, class_name: str | None) -> Marked:
        """Keep the part's file, take it into the model, score it again; the file is kept only if that worked."""
        name = class_name if class_name is not None else self.detector.class_names[0]
        suffix = next((s for magic, s in SUFFIXES.items() if data.startswith(magic)), None)
        if suffix is None:
            data, suffix = png_bytes(image), ".png"
        digest = hashlib.sha256(data).hexdigest()[:32]
        target = self.folder / folder_name(name) / f"{digest}{suffix}"
        with self._lock:  # one change at a time: the count and the folder stay in step
            before = self.detector.score([image], class_name)[0]
            if target.exists():
                return Marked(name, before, before, {}, str(target.relative_to(self.folder)), True, self._kept)
            if self._kept >= self.max_parts:
                raise FeedbackError(409, "feedback_full", f"{self._kept} parts already taken in (serve "
                                    f"--max-feedback {self.max_parts}); fold them into the checkpoint with "
                                    f"`defectscope accept RUN {self.folder}/<class>`, then restart with an empty "
                                    "folder, or raise the limit")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.tmp")
            with open(partial, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                changes = self.detector.absorb([image], class_name)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(target)
            _sync_folder(target.parent)  # the rename itself survives a power cut, as the answer says it is kept
            self._kept += 1
            after = self.detector.score([image], class_name)[0]
            return Marked(name, before, after, changes, str(target.relative_to(self.folder)), False, self._kept)
