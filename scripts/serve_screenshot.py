"""Screenshot of the service's page after a few predictions, for docs/serve_screenshot.png.

    python scripts/serve_screenshot.py runs/serve_padim/checkpoints/final --output docs/serve_screenshot.png

Starts `defectscope serve` on 127.0.0.1, opens the page in headless Chromium (Debian's chromium and
chromium-driver, through Selenium), chooses demo images (MTSD, demo/mtsd_mini) one after another
and saves the page as it looks after the last one.
"""

from __future__ import annotations

import argparse
import shutil

from _server import REPO_ROOT, running_server
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

DEMO = REPO_ROOT / "demo" / "mtsd_mini"
# normal tiles and defects; the last one, a break, is shown large
IMAGES = ["MT_Free/Imgs/exp1_num_154549.jpg", "MT_Fray/Imgs/exp4_num_77613.jpg", "MT_Free/Imgs/exp2_num_165392.jpg",
          "MT_Crack/Imgs/exp1_num_249594.jpg", "MT_Break/Imgs/exp3_num_148977.jpg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--output", default=str(REPO_ROOT / "docs" / "serve_screenshot.png"))
    parser.add_argument("--images", nargs="*", default=IMAGES, help="paths under demo/mtsd_mini")
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000", "--hide-scrollbars"):
        options.add_argument(flag)
    with running_server(args.checkpoint) as (_, url):
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "chromedriver"))
        try:
            driver.get(url + "/")
            body = driver.find_element(By.TAG_NAME, "body")
            for done, name in enumerate(args.images, start=1):
                driver.find_element(By.ID, "file-input").send_keys(str(DEMO / name))
                WebDriverWait(driver, 60).until(lambda _, n=done: body.get_attribute("data-results") == str(n))
                print(f"{name}: {driver.find_element(By.ID, 'verdict').text} "
                      f"score {driver.find_element(By.ID, 'score').text}")
            print("tally:", driver.find_element(By.ID, "tally").text)
            driver.save_screenshot(args.output)
        finally:
            driver.quit()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
