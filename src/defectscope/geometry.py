"""Where an image's pixels go between the file and the model, in plain numbers (no torch), so the
torch path (`defectscope.data.geometry`) and the exported runtime place pixels identically."""

from __future__ import annotations

from typing import Literal, NamedTuple

Resize = Literal["stretch", "keep_aspect", "none"]
Merge = Literal["mean", "max"]


class Box(NamedTuple):
    """The image's own pixels in a canvas: rows top … top+height, columns left … left+width."""

    top: int
    left: int
    height: int
    width: int


def as_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`data.image_size` as (height, width): one number is a square."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def fitted_box(original_hw: tuple[int, int], size_hw: tuple[int, int], resize: Resize) -> tuple[tuple[int, int], Box]:
    """(canvas size, box of the image in it) for an image of `original_hw` brought to `size_hw`."""
    h0, w0 = original_hw
    if resize == "none":
        return (h0, w0), Box(0, 0, h0, w0)
    height, width = size_hw
    if resize == "stretch":
        return (height, width), Box(0, 0, height, width)
    scale = min(height / h0, width / w0)
    h, w = max(1, min(height, round(h0 * scale))), max(1, min(width, round(w0 * scale)))
    # centred, so a part keeps its place however the aspect ratio of its photo varies
    return (height, width), Box((height - h) // 2, (width - w) // 2, h, w)



def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start of each tile along one side: every `stride`, the last one flush with the end.

    A side shorter than the tile gets one tile (the image is padded to it).
    """
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_grid(hw: tuple[int, int], tile: int, stride: int) -> list[tuple[int, int]]:
    """(top, left) of every tile of an image of size `hw`, row by row."""
    return [(y, x) for y in tile_origins(hw[0], tile, stride) for x in tile_origins(hw[1], tile, stride)]
