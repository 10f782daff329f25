"""The public verification page in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium), against the API served by uvicorn on a free port, with
no network beyond this machine: the QR code's address says valid; a superseded version says
so and links to the newer one; a tampered certificate file given to the page's form says
invalid and why, the PDF a customer received valid; /docs renders Swagger UI from the API's
own files."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from coldtrace.devtools.services import free_port
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings
from tests.conftest import Api, wait_for
from tests.world import MIN, T0, add_breach, plan, run, write_run

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None, reason="chromium, chromium-driver (deploy/bootstrap.sh)"
    ),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def api(settings: Settings, database_url: str) -> Iterator[Api]:
    """The API on its own store, served over HTTP on a free port; COLDTRACE_PUBLIC_URL is
    that address, so the certificates' verification addresses lead to it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    a = Api(settings.model_copy(update={"database_url": database_url, "public_url": base}))
    server = uvicorn.Server(uvicorn.Config(a.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="uvicorn to serve the API")
        yield a
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        a.close()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def qr_address(api: Api, certificate: dict[str, Any]) -> str:
    """What the certificate's QR code holds: <COLDTRACE_PUBLIC_URL>/v/<public_id>."""
    return f"{api.settings.public_url}/v/{certificate['body']['public_id']}"


def settled(browser: WebDriver) -> WebDriverWait[WebDriver]:
    """A wait for the page a click leads to: until then the previous page's elements may be
    found and go stale as it is replaced."""
    return WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException])


def status(browser: WebDriver) -> str:
    return str(browser.find_element(By.ID, "status").text)


def test_the_qr_address_says_valid_then_superseded(
    api: Api,
    browser: WebDriver,
    fleet: tuple[str, str],
    closed_delivery: int,
) -> None:
    [v1] = api.ok("GET", f"/deliveries/{closed_delivery}/certificates")
    browser.get(qr_address(api, v1))
    assert status(browser) == "valid"
    assert browser.find_element(By.ID, "verdict").text == "COMPLIANT"
    browser.switch_to.frame(browser.find_element(By.ID, "document"))  # the document, framed
    verdict = browser.find_element(By.CSS_SELECTOR, ".verdict").text
    assert verdict.splitlines()[0].lower() == "compliant", verdict
    browser.switch_to.default_content()

    _, device = fleet
    add_breach(api, device, T0 + 15 * MIN, T0 + 25 * MIN)  # found late: version 2
    api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    browser.get(qr_address(api, v1))
    assert status(browser) == "superseded by version 2"
    browser.find_element(By.LINK_TEXT, "version 2").click()
    settled(browser).until(lambda b: b.find_element(By.ID, "status").text == "valid")
    assert browser.find_element(By.ID, "verdict").text == "INCOMPLETE"


def test_a_french_customers_page_reads_in_french_and_switches_to_english(
    api: Api,
    browser: WebDriver,
    fleet: tuple[str, str],
    influx: InfluxClient,
) -> None:
    """The QR code of a French customer's certificate opens the page in French, times in
    Paris time, its framed document too; the page's "English" link turns both to English."""
    vehicle, device = fleet
    customer = {"id": "traiteur", "name": "Traiteur Bellecour", "language": "fr"}
    api.ok("POST", "/customers", json=customer | {"timezone": "Europe/Paris"})
    write_run(influx, device)
    d = api.ok("POST", "/deliveries", json=plan(vehicle, customer="traiteur"))
    run(api, d["id"], "start", T0)
    run(api, d["id"], "deliver", T0 + 40 * MIN)
    run(api, d["id"], "close")
    [c] = api.ok("GET", f"/deliveries/{d['id']}/certificates")
    browser.get(qr_address(api, c))
    assert status(browser) == "valide"
    assert browser.find_element(By.ID, "verdict").text == "CONFORME"
    window = browser.find_element(By.XPATH, '//th[text()="Du, au"]/following-sibling::td')
    assert window.text == "05/01/2026 09:00 (UTC+01:00) \u2013 05/01/2026 09:40 (UTC+01:00)"
    browser.switch_to.frame(browser.find_element(By.ID, "document"))
    assert browser.find_element(By.CSS_SELECTOR, ".verdict").text.splitlines()[0] == "CONFORME"
    browser.switch_to.default_content()

    browser.find_element(By.LINK_TEXT, "English").click()
    settled(browser).until(lambda b: b.find_element(By.ID, "status").text == "valid")
    assert browser.current_url == qr_address(api, c) + "?language=en"
    assert browser.find_element(By.ID, "verdict").text == "COMPLIANT"
    window = browser.find_element(By.XPATH, '//th[text()="From, to"]/following-sibling::td')
    assert window.text == "2026-01-05 09:00 (UTC+01:00) \u2013 2026-01-05 09:40 (UTC+01:00)"
    browser.switch_to.frame(browser.find_element(By.ID, "document"))
    assert browser.find_element(By.CSS_SELECTOR, ".verdict").text.splitlines()[0] == "COMPLIANT"


def test_a_tampered_file_given_to_the_page_says_invalid_and_why(
    api: Api,
    browser: WebDriver,
    closed_delivery: int,
    tmp_path: Path,
) -> None:
    [v1] = api.ok("GET", f"/deliveries/{closed_delivery}/certificates")
    tampered = v1 | {"body": v1["body"] | {"max_c": 3.0}}
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(tampered))
    browser.get(qr_address(api, v1))
    # What a drop on the form's file field does: the file becomes its value.
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    settled(browser).until(lambda b: b.find_elements(By.ID, "checked"))
    [result] = browser.find_elements(By.CSS_SELECTOR, "#checked td.status")
    assert result.text == "invalid: the signature does not match the body: changed after signing"

    # The PDF the customer received (the signed JSON attached to it).
    pdf = tmp_path / "certificate.pdf"
    pdf.write_bytes(api.client.get(f"/v/{v1['body']['public_id']}/certificate.pdf").content)
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(pdf))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    settled(browser).until(
        lambda b: (
            b.find_element(By.CSS_SELECTOR, "#checked td.status").text
            == "valid (this installation's record)"
        )
    )


def test_docs_render_without_a_cdn(api: Api, browser: WebDriver) -> None:
    browser.get(f"{api.settings.public_url}/docs")
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock"))
    title = browser.find_element(By.CSS_SELECTOR, ".information-container .title")
    assert title.text.startswith("coldtrace API")
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded and all(url.startswith(api.settings.public_url) for url in loaded), loaded
