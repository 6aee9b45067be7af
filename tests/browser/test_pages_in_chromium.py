"""The pages in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven
by Selenium), served by uvicorn on a seeded store: a user opens the dashboard, filters the job
list, follows a job to its page and on to its workflow's root, and no page logs a script
error or a refused resource, nor runs the hostile job's text. A screenshot of each page is
saved in the test's temporary folder (and in ``$TASKJOBS_SCREENSHOTS``, when set: that is how
``docs/screenshots`` is made)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from taskjobs.store import Store
from taskjobs.web import create_app
from tests.services import IN_CI, free_port
from tests.waiting import wait_for
from tests.web.seed import Seeded, seed

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def seeded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seeded]]:
    """uvicorn serving the app on a seeded SQLite store, in a thread; its base URL."""
    folder = tmp_path_factory.mktemp("browser")
    store = Store(f"sqlite:///{folder / 'jobs.sqlite3'}")
    store.upgrade()
    seeded = seed(store)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn to listen")
    yield f"http://127.0.0.1:{port}", seeded
    server.should_exit = True
    thread.join(timeout=10)
    store.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM and DRIVER):
        message = "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(f"{message}; .ci/run installs them")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    yield driver
    driver.quit()


def look(driver: webdriver.Chrome, name: str, folder: Path) -> None:
    """Check the page logged no error and ran no hostile text; save its screenshot."""
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], f"{name}: {errors}"
    assert driver.execute_script("return window.hostile === undefined"), "hostile text ran"
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    published = os.environ.get("TASKJOBS_SCREENSHOTS")
    if published:
        Path(published).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(published) / path.name)


def test_a_user_goes_from_the_dashboard_to_a_workflow(
    browser: webdriver.Chrome, seeded_server: tuple[str, Seeded], tmp_path: Path
) -> None:
    base, seeded = seeded_server
    browser.get(f"{base}/?refresh=0")
    assert browser.title.startswith("Dashboard")
    cards = {
        card.find_element(By.CLASS_NAME, "label").text.lower(): card.find_element(
            By.CLASS_NAME, "value"
        ).text
        for card in browser.find_elements(By.CSS_SELECTOR, "a.card")
    }
    assert cards == {"pending": "2", "running": "1", "finished": "4", "error": "2"}
    assert browser.find_element(By.CSS_SELECTOR, "svg").is_displayed(), "the timeline chart"
    look(browser, "dashboard", tmp_path)

    browser.find_element(By.LINK_TEXT, "Jobs").click()
    Select(browser.find_element(By.NAME, "state")).select_by_value("error")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait_for(lambda: "state=error" in browser.current_url, what="the filtered list")
    listed = [
        link.get_attribute("title") for link in browser.find_elements(By.CSS_SELECTOR, "a.id")
    ]
    assert listed == [seeded.hostile, seeded.failed_member]
    look(browser, "jobs", tmp_path)

    browser.find_element(By.CSS_SELECTOR, f"a.id[title='{seeded.failed_member}']").click()
    wait_for(lambda: seeded.failed_member in browser.current_url, what="the job page")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "LookupError: parcel 3 is lost" in page and "Workflow" in page
    look(browser, "job", tmp_path)

    workflow = browser.find_element(By.CSS_SELECTOR, "section.workflow")
    workflow.find_element(By.CSS_SELECTOR, f"a.id[title='{seeded.root}']").click()
    wait_for(lambda: seeded.root in browser.current_url, what="the root's page")
    children = browser.find_element(By.CSS_SELECTOR, "section.workflow").text
    assert "shop.charge" in children, "the root lists the job it published"

    browser.get(f"{base}/jobs/{seeded.hostile}?refresh=0")
    assert "<script>window.hostile=1</script>" in browser.find_element(By.TAG_NAME, "main").text
    look(browser, "hostile", tmp_path)

    browser.get(f"{base}/workers?refresh=0")
    assert {"alive", "silent", "stopped"} <= set(
        browser.find_element(By.TAG_NAME, "main").text.split()
    )
    look(browser, "workers", tmp_path)
