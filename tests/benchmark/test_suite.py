import pytest

from defectscope.benchmark.suite import cell_config, expand_cells, load_suite, select_cells
from defectscope.config import ConfigError
from helpers.benchmarks import REPO_ROOT

SHIPPED = sorted((REPO_ROOT / "benchmarks").glob("*.yaml"))


def test_the_issue_suites_ship():
    assert {"smoke", "mtsd", "mvtec", "btad", "pvqae_schedule", "pvqae_prior"} <= {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_suite_loads_and_every_cell_has_a_valid_config(path, tmp_path):
    suite = load_suite(path)
    cells = expand_cells(suite)
    assert cells and len({c.id for c in cells}) == len(cells)
    for cell in cells:
        cfg = cell_config(suite, cell, tmp_path)
        assert cfg.train.seed == cell.seed
        assert cfg.output_dir == str(tmp_path / "cells" / cell.id)
        assert all(s.root.startswith("/") for s in cfg.data.sources)  # resolved against the suite file


def test_the_mvtec_suite_uses_the_categories_present_in_shared_data():
    suite = load_suite(REPO_ROOT / "benchmarks" / "mvtec.yaml")
    ids = [c.id for c in expand_cells(suite)]
    assert "ae_ssim.mvtec.single_class.bottle.s0" in ids and "vq_e.mvtec.single_class.pill.s0" in ids
    assert "pvqae.mvtec.multi_class.all.s0" in ids and len(ids) == 21  # 7 models x (2 single + 1 multi)
    bottle = cell_config(suite, expand_cells(suite)[0], REPO_ROOT)
    assert [s.category for s in bottle.data.sources] == ["bottle"]
    assert bottle.data.sources[0].root == str((REPO_ROOT.parent / "shared" / "data" / "mvtec_ad").resolve())


def test_multi_class_cells_train_on_every_category(tmp_path):
    suite = load_suite(REPO_ROOT / "benchmarks" / "btad.yaml")
    multi = next(c for c in expand_cells(suite) if c.setting == "multi_class")
    assert [s.category for s in cell_config(suite, multi, tmp_path).data.sources] == ["01", "02", "03"]


def test_relative_paths_follow_the_suite_file_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = load_suite(REPO_ROOT / "benchmarks" / "smoke.yaml")
    cfg = cell_config(suite, expand_cells(suite)[0], tmp_path)
    assert cfg.data.sources[0].root == str(REPO_ROOT / "demo" / "mtsd_mini")
    assert cfg.data.image_size == 32 and cfg.model.base_channels == 8  # suite and model overrides applied


def write_suite(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


BASE = """
models:
  ae_ssim: {{config: {config}{extra_model}}}
datasets:
  d: {{sources: [{{layout: mtsd, root: data}}]}}
{extra}
"""


def suite_text(extra="", extra_model=""):
    return BASE.format(config=REPO_ROOT / "configs" / "ae_ssim" / "mtsd.yaml", extra=extra, extra_model=extra_model)


@pytest.mark.parametrize(
    ("extra", "extra_model", "needle"),
    [
        ("seedz: [1]", "", "'seedz'"),
        ("profile: {iters: 3}", "", "'profile.iters'"),
        ("settings: [few_class]", "", "few_class"),
        ("", ", overides: {}", "'models.ae_ssim.overides'"),
        ("", ", overrides: {train: {epochz: 1}}", "train.epochz"),
    ],
)
def test_a_wrong_key_is_an_error_naming_it_and_the_file(tmp_path, extra, extra_model, needle):
    path = write_suite(tmp_path, suite_text(extra, extra_model))
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_command_line_overrides_join_the_suite_overrides(tmp_path):
    suite = load_suite(write_suite(tmp_path, suite_text("overrides: {train: {epochs: 3}}")),
                       {"train": {"max_steps": 5}})
    cfg = cell_config(suite, expand_cells(suite)[0], tmp_path)
    assert (cfg.train.epochs, cfg.train.max_steps) == (3, 5)


def test_command_line_overrides_win_over_dataset_and_model_overrides(tmp_path):
    # a smoke run with --train.max_steps 3 must not train for the dataset's 600 steps
    text = BASE.format(config=REPO_ROOT / "configs" / "ae_ssim" / "mtsd.yaml", extra="", extra_model="")
    text = text.replace("root: data}]}", "root: data}], overrides: {train: {max_steps: 600}}}")
    text = text.replace("mtsd.yaml}", "mtsd.yaml, overrides: {train: {epochs: 7}}}")
    path = write_suite(tmp_path, text)
    plain = load_suite(path)
    cell = expand_cells(plain)[0]
    cfg = cell_config(plain, cell, tmp_path)
    assert (cfg.train.max_steps, cfg.train.epochs) == (600, 7)
    forced = load_suite(path, {"train": {"max_steps": 5, "epochs": 2}})
    cfg = cell_config(forced, cell, tmp_path)
    assert (cfg.train.max_steps, cfg.train.epochs) == (5, 2)


def test_only_selects_cells_by_glob():
    suite = load_suite(REPO_ROOT / "benchmarks" / "mvtec.yaml")
    cells = expand_cells(suite)
    assert [c.id for c in select_cells(cells, ["vq_e.*.multi_class.*"])] == ["vq_e.mvtec.multi_class.all.s0"]
    assert len(select_cells(cells, ["*bottle*", "*pill*"])) == 2 * len(suite.config.models)
    assert select_cells(cells, None) == cells
