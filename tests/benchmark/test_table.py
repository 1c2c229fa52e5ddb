"""Tables from a hand-made results.json: layout, bold best, mean row, reported columns marked."""

from defectscope.benchmark.table import build_tables, metric_table, results_markdown


def record(model, category_values, setting="single_class", seed=0, dataset="mv"):
    categories = {c: {"image_auroc": v, "pixel_auroc": v / 2} for c, v in category_values.items()}
    cat = next(iter(category_values)) if setting == "single_class" else "all"
    return {
        "cell": {"id": f"{model}.{dataset}.{setting}.{cat}.s{seed}", "model": model, "dataset": dataset,
                 "setting": setting, "category": cat, "seed": seed},
        "categories": categories, "train_seconds": 1.0, "train_steps": 2,
        "images_per_second": {"1": 10.0, "32": 100.0}, "peak_rss_mib": 500.0, "parameters": 2_000_000,
        "checkpoint_bytes": 8_000_000, "flops_per_image": 3e9,
        "environment": {"device_name": "CPU: test", "torch": "2.x", "commit": "abc", "date": "today"},
    }


def results(cells, reported=()):
    return {
        "suite": "t", "suite_file": "t.yaml", "generated": "now", "cells_total": len(cells), "pending": [],
        "models": [{"key": "a", "label": "A"}, {"key": "b", "label": "B"}],
        "datasets": [{"key": "mv", "reported_as": "mvtec"}],
        "settings": ["single_class", "multi_class"], "seeds": [0, 1],
        "cells": cells, "reported": list(reported),
    }


REPORTED = {
    "header": "A (reported: P paper, Table 1)", "paper": "P", "short": "P paper", "table": "1",
    "section": "4", "page": None, "setting": "multi_class", "setup": "GPU", "dataset": "mvtec",
    "metric": "image_auroc", "values": {"bottle": 0.99, "pill": 0.95, "screw": 0.5}, "printed": {},
}


def test_models_are_columns_categories_rows_mean_last_best_bold():
    r = results([record("a", {"bottle": 0.9}), record("a", {"pill": 0.6}),
                 record("b", {"bottle": 0.8}), record("b", {"pill": 0.7})])
    table = metric_table(r, "mv", "single_class", "image_auroc")
    assert table.header == ["category", "A", "B"]
    assert [row[0].text for row in table.rows] == ["bottle", "pill", "mean"]
    assert [(c.text, c.bold) for c in table.rows[0][1:]] == [("90.0", True), ("80.0", False)]
    assert [(c.text, c.bold) for c in table.rows[1][1:]] == [("60.0", False), ("70.0", True)]
    assert [(c.text, c.bold) for c in table.rows[2][1:]] == [("75.0", True), ("75.0", True)]  # a tie: both


def test_reported_columns_sit_beside_ours_in_italics_and_never_bold():
    r = results([record("a", {"bottle": 0.9}), record("a", {"pill": 0.6})], [REPORTED])
    table = metric_table(r, "mv", "single_class", "image_auroc")
    assert table.header[-1] == "A (reported: P paper, Table 1) †" and table.reported_columns == 1
    reported = [row[-1] for row in table.rows]
    assert [c.text for c in reported] == ["99.0", "95.0", "97.0"]  # mean over the rows shown, not the paper's
    assert all(c.italic and not c.bold for c in reported)
    assert metric_table(r, "mv", "single_class", "pixel_auroc").reported_columns == 0


def test_seeds_are_averaged_with_their_spread():
    r = results([record("a", {"bottle": 0.8}, seed=0), record("a", {"bottle": 0.9}, seed=1)])
    table = metric_table(r, "mv", "single_class", "image_auroc")
    assert table.rows[0][1].text == "85.0 ± 5.0"
    assert any("seeds 0, 1" in n for n in table.notes)


def test_markdown_has_every_group_metric_cost_and_cell_with_the_legend():
    r = results([record("a", {"bottle": 0.9}), record("b", {"bottle": 0.8, "pill": 0.7}, setting="multi_class")],
                [REPORTED])
    titles = [t.title for t in build_tables(r)]
    assert "mv · single_class · Image AUROC (%)" in titles and "mv · multi_class · cost" in titles
    text = results_markdown(r)
    assert "| bottle | **90.0** | *99.0* |" in text
    assert "| parameters (M) | 2.000 |" in text and "| GFLOPs per image | 3.000 |" in text
    assert "P paper, Table 1 (4; page not in the text extraction)" in text
    assert "| a.mv.single_class.bottle.s0 | 2 | 1.0 | CPU: test | 2.x | abc | today |" in text
    assert "not measured here" in text
