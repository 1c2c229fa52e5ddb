"""`defectscope tune-mosaic`: synthetic defects on validation normals, one short fit per m."""

import json

import torch

from defectscope.cli.main import main
from defectscope.engine.synthetic import paste_defects


def test_paste_defects_changes_one_rectangle_per_image():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = paste_defects(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape
    changed = (y != x).any(dim=1)
    for k in range(3):
        rows, cols = torch.nonzero(changed[k], as_tuple=True)
        assert len(rows) > 0
        area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert area <= (32 // 4) ** 2 and len(rows) <= area  # inside one rectangle of at most ¼ side


def test_search_trains_each_scale_and_writes_the_choice(tmp_path, mtsd_root):
    cfg = tmp_path / "fader.yaml"
    cfg.write_text(f"""
model: {{name: fader, channels: [4, 8, 8, 8, 8], mean_filter: 5}}
data:
  sources: [{{layout: mtsd, root: '{mtsd_root}'}}]
  image_size: 64
  batch_size: 4
  validation_fraction: 0.5
train: {{epochs: 1, max_steps: 1, progress: false, accelerator: cpu}}
""")
    out = tmp_path / "search"
    assert main(["tune-mosaic", str(cfg), "--scales", "4", "8", "--minutes", "1", "--output", str(out)]) == 0
    summary = json.loads((out / "search.json").read_text())
    assert set(summary["auroc"]) == {"4", "8"}
    assert summary["best"]["mean"] in (4, 8)
    assert all(0 <= v <= 1 for r in summary["auroc"].values() for v in r.values())
    assert (out / "m4" / "checkpoints" / "final").exists()


def test_search_refuses_a_model_that_is_not_fader(tmp_path, mtsd_root, capsys):
    cfg = tmp_path / "vq.yaml"
    cfg.write_text(f"model: {{name: vq_e}}\ndata: {{sources: [{{layout: mtsd, root: '{mtsd_root}'}}]}}\n")
    assert main(["tune-mosaic", str(cfg), "--output", str(tmp_path / "s")]) == 2
    assert "needs a fader config" in capsys.readouterr().err
