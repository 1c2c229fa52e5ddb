"""The report renders: headless Chromium (Debian's package) opens it from disk, every figure decodes
and the screenshot is a real picture, not a blank page."""

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from defectscope.report.build import build_report

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install chromium; .ci/run does it)"
)


def chromium(tmp_path, *args):
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def report(smoke_benchmark, tmp_path_factory):
    return build_report(smoke_benchmark / "cells" / "pvqae.mtsd.multi_class.all.s0",
                        tmp_path_factory.mktemp("render") / "report.html")


def test_every_figure_loads_in_chromium(report, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", report.as_uri())
    body = re.search(r"<body[^>]*>", dom).group(0)
    count = len(re.findall(r"<img ", report.read_text()))
    assert count == 5
    assert 'data-figures-loaded="all"' in body and f'data-figures="{count}/{count}"' in body


def test_the_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (2000, 1280, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # text, plots and heatmaps, not a flat page
    assert (pixels.min(axis=2) < 200).mean() > 0.05  # a real share of the page is drawn on


def test_a_predict_folders_page_renders_every_picture(predicted, tmp_path):
    page = build_report(predicted, tmp_path / "predictions.html")
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    body = re.search(r"<body[^>]*>", dom).group(0)
    count = len(re.findall(r"<img ", page.read_text()))
    assert count == 7  # 3 flagged and 4 passed parts; the passed ones folded in <details> still load
    assert 'data-figures-loaded="all"' in body and f'data-figures="{count}/{count}"' in body
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # pictures and heatmaps, not a flat page
