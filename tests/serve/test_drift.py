"""The drift watch: the flagged share of recent parts against the promise, alone and through /health."""

from __future__ import annotations

import pytest
from scipy.stats import binom

from defectscope.serve.drift import CONFIDENCE, DriftWatch
from helpers.serving import encoded_image, needs_serve_extra, noisy_image, normal_images, start_server

PROMISE = {"false_alarm_rate": 0.01, "false_alarm_bound": 0.01, "held_out_normals": 99}


def watch(window: int) -> DriftWatch:
    return DriftWatch(window, {"widget": PROMISE, "gadget": {k: None for k in PROMISE}})


def test_only_the_last_window_parts_count_and_parts_without_a_verdict_are_skipped():
    drift = watch(5)
    drift.add([("widget", True)] * 10 + [("widget", None), ("nobody", True)] + [("widget", False)] * 5)
    widget = {e["class_name"]: e for e in drift.status()}["widget"]
    assert (widget["scored"], widget["flagged"], widget["warning"]) == (5, 0, None)


@pytest.mark.parametrize("scored", [20, 100, 500])
def test_it_warns_exactly_when_the_flags_are_too_many_for_the_bound(scored):
    """Reference: the one-sided exact binomial test at the interval's tail, P(X ≥ k | bound) < (1 − confidence)/2."""
    for flagged in range(min(40, scored) + 1):
        drift = watch(scored)
        drift.add([("widget", True)] * flagged + [("widget", False)] * (scored - flagged))
        widget = {e["class_name"]: e for e in drift.status()}["widget"]
        too_many = flagged > 0 and binom.sf(flagged - 1, scored, PROMISE["false_alarm_bound"]) < (1 - CONFIDENCE) / 2
        assert (widget["warning"] is not None) == too_many, (scored, flagged)
        if flagged:
            assert widget["interval"][0] <= flagged / scored <= widget["interval"][1]


def test_a_class_without_a_promise_never_warns():
    drift = watch(10)
    drift.add([("gadget", True)] * 10)
    gadget = {e["class_name"]: e for e in drift.status()}["gadget"]
    assert gadget["flagged"] == 10 and gadget["warning"] is None


def test_health_warns_when_the_line_flags_more_than_promised_and_stops_when_it_calms(tiny_checkpoint, tmp_path):
    needs_serve_extra()
    import httpx

    noisy, smooth = encoded_image(noisy_image(40, seed=3)), encoded_image(normal_images(1, size=40, seed=11)[0])
    server = start_server(tiny_checkpoint, tmp_path / "server.log", "--drift-window", "20")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            def send(data: bytes, count: int) -> dict:
                for _ in range(count):
                    assert client.post("/predict", params={"overlay": "false"},
                                       files={"file": ("p.png", data, "image/png")}).status_code == 200
                return client.get("/health").json()

            health = send(noisy, 20)
            (entry,) = health["drift"]
            assert (entry["scored"], entry["flagged"]) == (20, 20)
            assert health["warning"] and "20 of the last 20 parts flagged" in health["warning"]
            health = send(smooth, 20)
            assert health["drift"][0]["flagged"] == 0 and health["warning"] is None
    finally:
        server.stop()
