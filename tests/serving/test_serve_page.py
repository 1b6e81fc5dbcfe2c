"""The page for people at `/`, driven in headless Chromium (Debian's chromium + chromium-driver, through
Selenium): the model card shows, and the form shows the prediction with every label's probability. Skipped when
no browser is installed."""
from __future__ import annotations

import shutil

import pytest
from conftest import serve

import tamer

webdriver = pytest.importorskip("selenium.webdriver")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture
def browser():
    if not BROWSER or not shutil.which(DRIVER):
        pytest.skip("no headless Chromium here (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, css: str, count: int = 1):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= count)
    return driver.find_elements(By.CSS_SELECTOR, css)


def test_the_page_shows_the_card_and_a_prediction_with_probabilities(browser, text_artifact, key_file):
    from selenium.webdriver.common.by import By

    texts = ["great food and service", "rude staff and dirty tables"]
    with serve(text_artifact, auth=True, api_key_file=str(key_file[0])) as s:
        browser.get(s.url + "/")
        browser.find_element(By.ID, "key").send_keys(key_file[1])
        browser.find_element(By.ID, "load").click()
        card = _wait(browser, "#card tr", 4)
        facts = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text for r in card}
        assert facts["id"] == text_artifact.id and facts["task"].startswith("text-classification")
        assert "test accuracy" in facts
        browser.find_element(By.ID, "input").send_keys("\n".join(texts))
        browser.find_element(By.ID, "submit").click()
        boxes = _wait(browser, ".prediction", 2)
        local = tamer.predict(text_artifact, texts)
        for box, expected in zip(boxes, local):
            assert box.find_element(By.TAG_NAME, "h3").text.startswith(expected["label"])
            rows = box.find_elements(By.CSS_SELECTOR, "tr.probability")
            shown = {r.find_elements(By.TAG_NAME, "td")[0].text: float(r.find_elements(By.TAG_NAME, "td")[1].text)
                     for r in rows}
            assert shown == pytest.approx(expected["probabilities"], abs=1e-4)
        assert key_file[1] not in browser.page_source.replace(browser.find_element(By.ID, "key").get_attribute("value"), "")


def test_the_page_without_keys_shows_the_digits_card_and_an_error_in_words(browser, digits_artifact):
    from selenium.webdriver.common.by import By

    with serve(digits_artifact) as s:
        browser.get(s.url + "/")
        _wait(browser, "#card tr", 4)
        assert "64 numbers" in browser.find_element(By.ID, "hint").text
        browser.find_element(By.ID, "input").send_keys("1, 2, 3")
        browser.find_element(By.ID, "submit").click()
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "error").text)
        assert "8x8" in browser.find_element(By.ID, "error").text
