"""The synthetic-defect ladder: each kind changes one patch of the size, shape and source it says."""

import torch

from defectscope.engine.synthetic import LADDER, Paste, paste_defects


def changed_box(x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    rows, cols = torch.nonzero((y != x).any(dim=0), as_tuple=True)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_scar_is_thin_and_cut_from_the_same_image():
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y = paste_defects(x, torch.Generator().manual_seed(2), LADDER["scar"])
    for k in range(4):
        h, w = changed_box(x[k], y[k])
        assert min(h, w) <= 64 // 32 and max(h, w) <= 64 // 4
    # a constant image pasted onto itself changes only by the contrast factor, never to another image's value
    flat = torch.stack([torch.full((3, 64, 64), v) for v in (0.2, 0.4)])
    z = paste_defects(flat, torch.Generator().manual_seed(3), Paste(thin=True, same_image=True, contrast=0.25))
    for k, v in enumerate((0.2, 0.4)):
        allowed = torch.tensor([v, v * 0.75, v * 1.25])
        assert all(torch.isclose(allowed, u).any() for u in torch.unique(z[k]))
        assert len(torch.unique(z[k])) == 2  # the scar is there, and only one factor is used

def test_faint_blends_half_of_the_next_image_into_a_small_patch():
    a, b = torch.zeros(3, 64, 64), torch.ones(3, 64, 64)
    y = paste_defects(torch.stack([a, b]), torch.Generator().manual_seed(0), LADDER["faint"])
    h, w = changed_box(a, y[0])
    assert 64 // 16 <= min(h, w) and max(h, w) <= 64 // 8
    assert torch.allclose(torch.unique(y[0]), torch.tensor([0.0, 0.5]))


def test_the_default_kind_is_the_rectangle_and_draws_are_reproducible():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    once = paste_defects(x, torch.Generator().manual_seed(1))
    assert torch.equal(once, paste_defects(x, torch.Generator().manual_seed(1), LADDER["rectangle"]))
    assert not torch.equal(once, paste_defects(x, torch.Generator().manual_seed(5)))
