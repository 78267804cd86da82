"""Pairing end to end through the real console in a real headless Chromium (Debian's chromium and
chromedriver, driven by selenium; nothing is downloaded). Screenshots of each page: a temporary directory,
docs/screens/ with `make screens` (tests/screenshots.py)."""
from __future__ import annotations

import os
import shutil

import pytest

from device.machine import Phase
from devkit.waiting import wait_for
from tests.provisioning.conftest import STAFF_PASSWORD, STAFF_USER, code_of, paired_idle
from tests.screenshots import screens_dir

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", "/usr/bin/chromedriver"

# No skip when they are missing: `make test` (tools/bootstrap) installs Debian's chromium and chromium-driver.


@pytest.fixture
def browser(tmp_path):
    os.environ["SE_OFFLINE"] = "true"  # selenium must not try to fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--window-size=1100,900", "--lang=zh-CN"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(DRIVER, log_output=str(tmp_path / "chromedriver.log")), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def shot(drv, name: str, width: int = 1100) -> None:
    """A full-page screenshot at `width` CSS pixels."""
    height = drv.execute_script("return Math.max(document.body.scrollHeight, 400)")
    drv.set_window_size(width, min(int(height) + 140, 3000))
    assert drv.save_screenshot(str(screens_dir() / f"console-{name}.png"))  # docs/screens: `make screens`


def test_staff_pairs_a_terminal_in_a_real_browser(browser, console, site, enrol):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    t = enrol("rpi-1000000a3f9c2b7e", HCP_ENROLMENT_CONSOLE_URL=f"{console.url}/pair")
    code = code_of(t)
    other = enrol("rpi-10000000c0ffee42")  # a second unpaired terminal in the list
    code_of(other)

    browser.get(f"{console.url}/")
    assert browser.current_url.endswith("/login")  # signed out: sent to sign in
    shot(browser, "login", 420)
    browser.find_element(By.NAME, "user").send_keys(STAFF_USER)
    browser.find_element(By.NAME, "password").send_keys(STAFF_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    wait_for(lambda: "rpi-1000000a3f9c2b7e" in browser.page_source, 10, f"unpaired terminal listed: {browser.page_source[-2500:]}")
    assert "● 在线" in browser.page_source
    shot(browser, "terminals")
    shot(browser, "terminals-phone", 400)

    browser.get(t.pairing.qr_url)  # what the phone opens after scanning the terminal's pairing QR
    assert browser.find_element(By.NAME, "code").get_attribute("value") == code
    Select(browser.find_element(By.NAME, "window")).select_by_value("W01")
    shot(browser, "pair", 420)
    browser.find_element(By.CSS_SELECTOR, "form#pair button").click()
    wait_for(lambda: "已配对 rpi-1000000a3f9c2b7e" in browser.page_source, 15, "pairing confirmed in the page")

    paired_idle(t, "W01")  # the terminal switched to its own account and window
    assert t.state.phase == Phase.IDLE and t.pairing is None
    wait_for(lambda: site.reg.status("rpi-1000000a3f9c2b7e") is not None, 10, "terminal status at the center")
    browser.get(f"{console.url}/")
    wait_for(lambda: "在用" in browser.page_source and "● 在线" in browser.page_source, 10, "paired and online")
    shot(browser, "paired")

    # a wrong code through the same form is refused and changes nothing
    browser.find_element(By.NAME, "code").send_keys("000000" if code_of(other) != "000000" else "000001")
    browser.find_element(By.CSS_SELECTOR, "form#pair button").click()
    wait_for(lambda: "unknown, used or expired" in browser.page_source, 10, "refusal shown")
    assert other.mode == "enrolling"

    browser.get(f"{console.url}/audit")
    assert f"<td>{STAFF_USER}</td><td>pair</td><td>rpi-1000000a3f9c2b7e</td>" in browser.page_source
    shot(browser, "audit")
