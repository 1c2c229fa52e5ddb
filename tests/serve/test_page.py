"""The page at `/` in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

A person's path: open the page, choose images, read the verdict, the score against the threshold
and the running tally; a refused upload shows the server's message and leaves the tally alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.serving import REPO_ROOT, noisy_image

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
DEMO_IMAGE = REPO_ROOT / "demo" / "mtsd_mini" / "MT_Blowhole" / "Imgs" / "exp1_num_108719.jpg"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium or chromedriver not installed (apt-get install chromium chromium-driver; .ci/run does it)",
)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def upload_and_wait(driver, path: Path, results: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "file-input").send_keys(str(path))
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-results")
                                    == str(results))


def text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def test_a_person_checks_parts_on_the_page(browser, server, tmp_path):
    httpx = pytest.importorskip("httpx")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not DEMO_IMAGE.is_file():
        pytest.skip(f"demo image not found at {DEMO_IMAGE}")
    browser.get(server.url + "/")
    WebDriverWait(browser, 30).until(lambda d: "ae_ssim" in text(d, "model-info"))
    assert text(browser, "tally-checked") == "0"

    # a demo part: the page says what the API says
    expected = httpx.post(server.url + "/predict", files={"file": (DEMO_IMAGE.name, DEMO_IMAGE.read_bytes())}).json()
    upload_and_wait(browser, DEMO_IMAGE, 1)
    assert text(browser, "verdict") == expected["verdict"]
    assert float(text(browser, "score")) == pytest.approx(expected["score"], rel=1e-3)
    assert float(text(browser, "threshold")) == pytest.approx(expected["threshold"], rel=1e-3)
    flagged = int(expected["defective"])
    assert (text(browser, "tally-checked"), text(browser, "tally-flagged")) == ("1", str(flagged))
    bound = f"{100 * expected['false_alarm_bound']:.3g}"
    assert f"flags at most {bound} % of good parts like the {expected['held_out_normals']} held out" in text(
        browser, "promise")
    assert browser.find_element(By.ID, "overlay-image").get_attribute("naturalWidth") == str(expected["width"])

    # a noisy part is a defect for the tiny model: red verdict, one more flagged
    noisy = tmp_path / "noisy.png"
    Image.fromarray((noisy_image(64, seed=5) * 255).astype(np.uint8)).save(noisy)
    upload_and_wait(browser, noisy, 2)
    assert text(browser, "verdict") == "DEFECT"
    colour = browser.find_element(By.ID, "verdict").value_of_css_property("background-color")
    assert colour.startswith("rgba(198, 40, 40") or colour.startswith("rgb(198, 40, 40")
    assert (text(browser, "tally-checked"), text(browser, "tally-flagged")) == ("2", str(flagged + 1))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history li")) == 2

    # a file that is not an image: the server's message on the page, the tally unchanged
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    upload_and_wait(browser, notes, 3)
    assert "not a readable image" in text(browser, "error")
    assert text(browser, "tally-checked") == "2"
    history = browser.find_elements(By.CSS_SELECTOR, "#history li")
    assert len(history) == 3 and "REFUSED" in history[0].text and "notes.png" in history[0].text
    assert browser.find_element(By.ID, "download").is_enabled()
    warning = httpx.get(server.url + "/health").json()["warning"]  # the page's drift line says what /health says
    assert browser.find_element(By.ID, "drift").is_displayed() == bool(warning)
    assert text(browser, "drift") == (warning or "")

    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # images, colours and text, not a blank page


def test_a_false_alarm_marked_good_on_the_page_passes_next_time(browser, tmp_path):
    """`serve --allow-feedback`: the button shows on a DEFECT only, takes the part in, and the same part then passes."""
    pytest.importorskip("httpx")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from helpers.serving import make_patchcore_checkpoint, normal_images, start_server

    checkpoint = make_patchcore_checkpoint(tmp_path / "final")
    server = start_server(checkpoint, tmp_path / "server.log", "--allow-feedback", str(tmp_path / "good"))
    try:
        browser.get(server.url + "/")
        WebDriverWait(browser, 30).until(lambda d: "patchcore" in text(d, "model-info"))
        smooth, noisy = tmp_path / "smooth.png", tmp_path / "noisy.png"
        Image.fromarray((normal_images(1, 64, seed=9)[0] * 255).astype(np.uint8)).save(smooth)
        Image.fromarray((noisy_image(64, seed=3) * 255).astype(np.uint8)).save(noisy)
        upload_and_wait(browser, smooth, 1)
        assert text(browser, "verdict") == "OK" and not browser.find_element(By.ID, "mark-good").is_displayed()
        upload_and_wait(browser, noisy, 2)
        assert text(browser, "verdict") == "DEFECT"
        browser.find_element(By.ID, "mark-good").click()
        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-feedback")
                                         == "1")
        assert "taken in as good" in text(browser, "feedback-note") and "now OK" in text(browser, "feedback-note")
        assert "marked good" in browser.find_elements(By.CSS_SELECTOR, "#history li")[0].text
        assert len(list((tmp_path / "good" / "normal").iterdir())) == 1
        upload_and_wait(browser, noisy, 3)
        assert text(browser, "verdict") == "OK"
    finally:
        server.stop()
