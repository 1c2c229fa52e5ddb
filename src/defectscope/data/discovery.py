"""Finding the images to score in files and folders a person names, leaving the layouts' masks out.

What `defectscope predict` scores: every image file below each folder given (hidden entries
skipped), and each file given directly, in the order given, each folder's files sorted. Ground
truth is left out by the layouts' own rules (`is_ground_truth`), so a whole MVTec or MTSD tree can
be named. Torch-free, and it never decodes a pixel: it lists files.

An entry named like an image that is not a regular file (a FIFO, a link to a device such as
/dev/zero, a link loop or a broken link, a folder called `x.png`) is kept in its place with the
reason it cannot be read (`InputImage.error`, from `not_a_file`), so the run can say so in its row
instead of leaving it out without a word. `not_a_file` looks with `os.stat` and never opens the
entry: opening a FIFO would wait for a writer forever.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .limits import IMAGE_SUFFIXES

__all__ = ["GROUND_TRUTH_RULES", "FoundInputs", "InputImage", "collect_inputs", "find_inputs", "is_ground_truth",
           "is_image", "not_a_file"]

GROUND_TRUTH_DIR = "ground_truth"  # MVTec AD and BTAD: masks below <category>/ground_truth/
MASK_SUFFIX = "_mask"  # MVTec AD's mask names: <name>_mask.png
# the rules in words, for the line that says how many files they skipped
GROUND_TRUTH_RULES = f"files under {GROUND_TRUTH_DIR}/, *{MASK_SUFFIX}.*, and MTSD's NAME.png beside NAME.jpg"


@dataclass(frozen=True)
class InputImage:
    path: Path  # as found: the input folder joined with the path below it
    relative: Path  # below its input folder (just the name for a file given directly)
    error: str | None = None  # why it cannot be read as an image (not a regular file); None for a file


@dataclass(frozen=True)
class FoundInputs:
    """What `find_inputs` found: the inputs in order (unreadable entries included, with their reason)
    and the ground-truth masks it left out."""

    images: list[InputImage]
    skipped: list[Path]  # ground-truth masks, in the order found

    @property
    def readable(self) -> list[InputImage]:
        return [image for image in self.images if image.error is None]


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


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_a_file(path: Path) -> str | None:
    """Why `path` cannot be read as an image file, or None for a regular file; never opens it."""
    link = ""
    if path.is_symlink():
        try:
            link = f"a symbolic link to {os.readlink(path)}, "
        except OSError:
            link = "a symbolic link, "
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"{link}part of a symbolic link loop: not an image file"
        if link and isinstance(err, FileNotFoundError):
            return f"{link}which does not exist (a broken link): not an image file"
        return f"cannot look at it: {err.strerror or err}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"{link}a folder named like an image, not an image file (images inside it are listed on their own)"
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"{link}{kind}, not an image file; not opened"


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop: Python 3.11 raises RuntimeError
        return path.absolute()


def _below(root: Path) -> list[tuple[Path, Path]]:
    """Entries named like images below a folder, hidden ones left out, sorted; (path, path below root)."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if is_image(path) and not any(part.startswith(".") for part in relative.parts):
            found.append((path, relative))
    return sorted(found)


def find_inputs(inputs: Sequence[str], exclude: Path | None = None) -> FoundInputs:
    """Entries named like images in the order given (each folder's sorted), and the ground-truth files left out.

    Files under `exclude` (an output folder) are left out, so the pictures of an earlier run inside
    an input folder are never scored. The same file reached twice (a folder and a file in it, a
    link) is listed once, where it was first found. An entry that is not a regular file stays in
    the list with `error` saying what it is.
    """
    siblings = _Siblings()
    excluded = exclude.resolve() if exclude is not None else None
    found: list[InputImage] = []
    seen: set[Path] = set()
    skipped: list[Path] = []
    for item in inputs:
        root = Path(item)
        if root.is_dir():
            pairs = _below(root)
        elif root.is_file() or root.is_symlink() or root.exists():  # a FIFO or a link named directly gets a row
            pairs = [(root, Path(root.name))]
        else:
            raise DataError(f"{root}: no such file or folder")
        for path, relative in pairs:
            real = _real(path)
            if excluded is not None and real.is_relative_to(excluded):
                continue
            if is_ground_truth(path, siblings):
                skipped.append(path)
            elif real not in seen:
                seen.add(real)
                found.append(InputImage(path, relative, not_a_file(path)))
    if not found:
        note = f" ({len(skipped)} ground-truth masks skipped)" if skipped else ""
        raise DataError(f"no images found in {', '.join(inputs)}{note} "
                        f"(suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return FoundInputs(found, skipped)


def collect_inputs(inputs: Sequence[str], exclude: Path | None = None) -> tuple[list[InputImage], int]:
    """The regular image files `find_inputs` finds, and how many ground-truth files it skipped.

    Entries that are not regular files are left out here; `defectscope predict` uses `find_inputs`
    to give each a row with its reason instead.
    """
    found = find_inputs(inputs, exclude)
    readable = found.readable
    if not readable:
        raise DataError(f"no image files in {', '.join(inputs)}: "
                        + "; ".join(f"{i.path}: {i.error}" for i in found.images[:5]))
    return readable, len(found.skipped)
