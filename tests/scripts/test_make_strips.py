"""scripts/make_strips.py: every defect's mask lands in the slot its part was stitched into."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.scripts import load_script


@pytest.fixture(scope="module")
def make_strips():
    return load_script("make_strips")


def _part(path: Path, value: int, size=(40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


def test_strips_keep_each_defect_under_its_mask(tmp_path, make_strips):
    train = [_part(tmp_path / "in" / "train" / f"{i}.png", 10 + i) for i in range(6)]
    good = [_part(tmp_path / "in" / "good" / f"{i}.png", 100) for i in range(4)]
    defects = []
    for i in range(3):
        image = _part(tmp_path / "in" / "bad" / f"{i}.png", 200)  # a bright part: its whole area is the defect
        mask = tmp_path / "in" / "mask" / f"{i}.png"
        mask.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (40, 32), 255).save(mask)
        defects.append((image, mask))
    out = tmp_path / "strips"
    make_strips.write_category(out, train, good, defects, parts=3, height=16, seed=0)
    strips = [np.asarray(Image.open(f))[..., 0] for f in sorted((out / "train" / "good").iterdir())]
    assert len(strips) == 2  # 6 training parts, 3 a strip: each part in exactly one
    assert sorted(int(v) for s in strips for v in s[0, ::20]) == [10, 11, 12, 13, 14, 15]
    assert len(list((out / "test" / "good").iterdir())) == 4
    for i in range(3):
        strip = np.asarray(Image.open(out / "test" / "defect" / f"{i:04d}.png"))[..., 0]
        mask = np.asarray(Image.open(out / "ground_truth" / "defect" / f"{i:04d}_mask.png"))
        assert strip.shape == mask.shape == (16, 60)  # 3 parts of 20 × 16 (40 × 32 at half the height)
        assert (strip[mask > 0] == 200).all() and (strip[mask == 0] == 100).all() and (mask > 0).sum() == 16 * 20
    with pytest.raises(SystemExit, match="not empty"):  # a derived set is never overwritten
        make_strips.write_category(out, train, good, defects, parts=3, height=16, seed=0)
