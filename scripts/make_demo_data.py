"""Build demo/mtsd_demo/ from the full MTSD: enough tiles for a demo whose AUROC interval means something.

Deterministic: in each class folder the `.jpg` names are sorted and every k-th is taken from the
first (k = count // wanted), as for demo/mtsd_mini. Each image is shrunk so its longer side is at
most MAX_SIDE px (the demo scores at 128 px; shipping the originals would be ~15× the bytes) and
saved as JPEG quality 90; its mask is shrunk with nearest neighbour so it stays 0/255.

    python scripts/make_demo_data.py ../shared/data/mtsd demo/mtsd_demo
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

WANTED = {"MT_Free": 150, "MT_Blowhole": 12, "MT_Break": 12, "MT_Crack": 12, "MT_Fray": 12, "MT_Uneven": 12}
MAX_SIDE = 192


def shrink(image: Image.Image, resample: int) -> Image.Image:
    scale = MAX_SIDE / max(image.size)
    if scale >= 1:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the full MTSD (MT_Free/Imgs, MT_<Defect>/Imgs)")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    if args.output.exists():
        shutil.rmtree(args.output)
    for folder, wanted in WANTED.items():
        names = sorted(p.name for p in (args.source / folder / "Imgs").glob("*.jpg"))
        picked = names[:: len(names) // wanted][:wanted]
        out = args.output / folder / "Imgs"
        out.mkdir(parents=True)
        for name in picked:
            src = args.source / folder / "Imgs" / name
            shrink(Image.open(src).convert("L"), Image.Resampling.LANCZOS).save(out / name, quality=90)
            mask = Image.open(src.with_suffix(".png")).convert("L")
            shrink(mask, Image.Resampling.NEAREST).point(lambda v: 255 if v >= 128 else 0).save(
                (out / name).with_suffix(".png"), optimize=True)
        print(f"{folder}: {len(picked)} of {len(names)}")


if __name__ == "__main__":
    main()
