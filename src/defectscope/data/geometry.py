"""Where an image's pixels go between the file and the model, and back.

An image is brought to the working size (`data.image_size`) by `data.resize`: stretched, scaled
to fit with a border (`keep_aspect`), or left as it is (`none`). A :class:`Box` records where
the image's own pixels lie in the result, so a map can ignore the border and be brought back to
the image's original size for evaluation. Tiling cuts a working-size image into overlapping
square tiles the model sees one by one, and stitches the tile maps into one map of the image.

Everything here works on tensors and is exact: tiling then stitching a map that depends only
on the pixel returns it unchanged, and the border never reaches a stitched or restored map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from defectscope.data.transforms import resize_mask
from defectscope.geometry import Box, Merge, Resize, as_hw, fitted_box, tile_grid, tile_origins
from defectscope.resampling import resize_chw

__all__ = ["Box", "Merge", "Resize", "Stitcher", "as_hw", "cut_tiles", "fit", "fitted_box", "pad_to_tile", "restore",
           "stitch", "tile_grid", "tile_origins", "valid_mask"]


def fit(x: Tensor, size_hw: tuple[int, int], resize: Resize, *, nearest: bool = False) -> tuple[Tensor, Box]:
    """(C, H, W) image (bilinear) or mask (`nearest`) → (C, *canvas) and the image's box in it.

    The keep_aspect border is zero; the box, not its value, marks it, so nothing downstream
    mistakes a black border for a black part.
    """
    canvas, box = fitted_box(tuple(x.shape[-2:]), size_hw, resize)
    size = (box.height, box.width)
    # images through the numpy resampling every scorer uses (defectscope.resampling), not torch's:
    # two implementations would round a value on a half step apart once the image is made 8-bit
    if nearest:
        inner = resize_mask(x, size)
    else:
        same = tuple(x.shape[-2:]) == size
        inner = x if same else torch.from_numpy(resize_chw(x.detach().cpu().float().numpy(), size))
    if (box.height, box.width) == canvas:
        return inner, box
    out = x.new_zeros((*x.shape[:-2], *canvas))
    out[..., box.top:box.top + box.height, box.left:box.left + box.width] = inner
    return out, box


def valid_mask(canvas_hw: tuple[int, int], box: Box) -> Tensor:
    """(H, W) bool: True on the image's own pixels."""
    valid = torch.zeros(canvas_hw, dtype=torch.bool)
    valid[box.top:box.top + box.height, box.left:box.left + box.width] = True
    return valid


def restore(anomaly_map: Tensor, box: Box, original_hw: tuple[int, int]) -> Tensor:
    """A (H, W) map on the canvas → (h0, w0) map of the image as it was read (border dropped, bilinear)."""
    inner = anomaly_map[box.top:box.top + box.height, box.left:box.left + box.width]
    if tuple(inner.shape) == tuple(original_hw):
        return inner
    return F.interpolate(inner[None, None].float(), size=tuple(original_hw), mode="bilinear",
                         align_corners=False)[0, 0]


# ---------------------------------------------------------------------------------- tiling


def pad_to_tile(x: Tensor, tile: int) -> Tensor:
    """Zero-pad the bottom and right of a (…, H, W) tensor to at least tile × tile."""
    h, w = x.shape[-2:]
    if h >= tile and w >= tile:
        return x
    return F.pad(x, (0, max(0, tile - w), 0, max(0, tile - h)))


def cut_tiles(x: Tensor, origins: list[tuple[int, int]], tile: int) -> Tensor:
    """(C, H, W) → (N, C, tile, tile) at `origins` (pads the image first if it is smaller than a tile)."""
    x = pad_to_tile(x, tile)
    return torch.stack([x[..., top:top + tile, left:left + tile] for top, left in origins])


class Stitcher:
    """Accumulates tile maps into one (H, W) map, a batch of tiles at a time (bounded memory).

    Overlaps are averaged (`mean`) or their `max` is kept. Every pixel of the image is covered by
    at least one tile (see :func:`tile_origins`); what a tile covers beyond the image (padding of
    a small image) is dropped.
    """

    def __init__(self, hw: tuple[int, int], tile: int, merge: Merge, device: torch.device | None = None) -> None:
        if merge not in ("mean", "max"):
            raise ValueError(f"merge must be 'mean' or 'max', got {merge!r}")
        self.hw, self.tile, self.merge = hw, tile, merge
        padded = (max(hw[0], tile), max(hw[1], tile))
        if merge == "mean":
            # float64 sums of float32 maps are exact for any realistic overlap count, so the mean of
            # equal values is that value exactly
            self.total = torch.zeros(padded, dtype=torch.float64, device=device)
            self.count = torch.zeros(padded, dtype=torch.float64, device=device)
        else:
            self.total = torch.full(padded, float("-inf"), device=device)

    def add(self, tile_maps: Tensor, origins: list[tuple[int, int]]) -> None:
        t = self.tile
        for m, (y, x) in zip(tile_maps, origins, strict=True):
            if self.merge == "mean":
                self.total[y:y + t, x:x + t] += m
                self.count[y:y + t, x:x + t] += 1
            else:
                self.total[y:y + t, x:x + t] = torch.maximum(self.total[y:y + t, x:x + t], m)

    def result(self) -> Tensor:
        out = (self.total / self.count).float() if self.merge == "mean" else self.total
        return out[: self.hw[0], : self.hw[1]]


def stitch(tile_maps: Tensor, origins: list[tuple[int, int]], hw: tuple[int, int], merge: Merge) -> Tensor:
    """(N, tile, tile) maps at `origins` → one (H, W) map (see :class:`Stitcher`)."""
    stitcher = Stitcher(hw, tile_maps.shape[-1], merge, tile_maps.device)
    stitcher.add(tile_maps.float(), origins)
    return stitcher.result()
