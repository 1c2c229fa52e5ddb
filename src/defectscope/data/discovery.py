"""Finding the images to score in files and folders a person names, leaving the layouts' masks out.

What `defectscope predict` scores: every image file below each folder given (hidden entries
skipped), and each file given directly, in the order given, each folder's files sorted. Ground
truth is left out by the layouts' own rules (`is_ground_truth`), so a whole MVTec or MTSD tree can
be named. Torch-free, and it never decodes a pixel: it lists files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .limits import IMAGE_SUFFIXES

__all__ = ["GROUND_TRUTH_RULES", "InputImage", "collect_inputs", "is_ground_truth", "is_image"]

GROUND_TRUTH_DIR = "ground_truth"  # MVTec AD and BTAD: masks below <category>/ground_truth/
MASK_SUFFIX = "_mask"  # MVTec AD's mask names: <name>_mask.png
# the rules in words, for the line that says how many files they skipped
GROUND_TRUTH_RULES = f"files under {GROUND_TRUTH_DIR}/, *{MASK_SUFFIX}.*, and MTSD's NAME.png beside NAME.jpg"


@dataclass(frozen=True)
class InputImage:
    path: Path  # as found: the input folder joined with the path below it
    relative: Path  # below its input folder (just the name for a file given directly)


class _Siblings:
    """Per folder: which suffixes each stem has, listed once, to recognise MTSD's masks."""

    def __init__(self) -> None:
        self._cache: dict[Path, dict[str, set[str]]] = {}

    def suffixes(self, path: Path) -> set[str]:
        folder = path.parent
        if folder not in self._cache:
            listing: dict[str, set[str]] = {}
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = Path(entry.name)
                    listing.setdefault(name.stem, set()).add(name.suffix.lower())
            self._cache[folder] = listing
        return self._cache[folder].get(path.stem, set())


def is_ground_truth(path: Path, siblings: _Siblings | None = None) -> bool:
    """A layout's mask: anything under a `ground_truth/` folder, `*_mask.*`, or MTSD's `NAME.png`
    beside its image `NAME.jpg` (any other image suffix)."""
    if GROUND_TRUTH_DIR in path.parts[:-1] or path.stem.endswith(MASK_SUFFIX):
        return True
    if path.suffix.lower() != ".png":
        return False
    return bool((siblings or _Siblings()).suffixes(path) & (IMAGE_SUFFIXES - {".png"}))


def is_image(path: Path) -> bool:
    """An image file by its name: a known suffix (any case), not hidden."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def collect_inputs(inputs: Sequence[str], exclude: Path | None = None) -> tuple[list[InputImage], int]:
    """Images in the order given (each folder's files sorted), and how many ground-truth files were skipped.

    Files under `exclude` (an output folder) are left out, so the pictures of an earlier run inside
    an input folder are never scored. The same file reached twice (a folder and a file in it, a
    link) is listed once, where it was first found.
    """
    siblings = _Siblings()
    excluded = exclude.resolve() if exclude is not None else None
    found: list[InputImage] = []
    seen: set[Path] = set()
    skipped = 0
    for item in inputs:
        root = Path(item)
        if root.is_dir():
            candidates = sorted(
                p for p in root.rglob("*")
                if is_image(p) and p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
            )
            pairs = [(p, p.relative_to(root)) for p in candidates]
        elif root.is_file():
            pairs = [(root, Path(root.name))]
        else:
            raise DataError(f"{root}: no such file or folder")
        for path, relative in pairs:
            real = path.resolve()
            if excluded is not None and real.is_relative_to(excluded):
                continue
            if is_ground_truth(path, siblings):
                skipped += 1
            elif real not in seen:
                seen.add(real)
                found.append(InputImage(path, relative))
    if not found:
        note = f" ({skipped} ground-truth masks skipped)" if skipped else ""
        raise DataError(f"no images found in {', '.join(inputs)}{note} "
                        f"(suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return found, skipped
