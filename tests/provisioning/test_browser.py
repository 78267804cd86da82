"""Pairing end to end through the staff console of the center app in a real headless Chromium (Debian's
chromium and chromedriver, driven by selenium; nothing is downloaded): sign in, open the terminal's pairing
QR, type the code, pair, add a user, read the audit log. Screenshots of each page at a desktop (1100) and a
phone (375) width: `screens_dir() / "center-<name>.png"` and `center-<name>-phone.png` (docs/screens/ with
`make screens`, tests/screenshots.py)."""
from __future__ import annotations


import pytest

from center.store import Store, sqlite_url
from device.machine import Phase
from devkit.waiting import wait_for
from tests.provisioning.conftest import STAFF_PASSWORD, STAFF_USER, code_of, paired_idle
from tests.provisioning.test_console import serve_console
from tests.chromium import chromium
from tests.screenshots import screens_dir

DESKTOP, PHONE = 1100, 375

# No skip when they are missing: `make test` (tools/bootstrap) installs Debian's chromium and chromium-driver.


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path, DESKTOP, 900) as drv:
        yield drv


@pytest.fixture
def center_console(site, tmp_path):
    store = Store(sqlite_url(tmp_path / "center.db"))
    with serve_console(site.prov, store, tmp_path) as c:
        yield c
    store.close()


def shot(drv, name: str) -> None:
    """Full-page screenshots at the desktop width and, emulating a phone, at 375 CSS pixels."""
    for width, suffix, mobile in ((DESKTOP, "", False), (PHONE, "-phone", True)):
        drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": mobile})
        height = int(drv.execute_script("return Math.max(document.documentElement.scrollHeight, 400)"))
        drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": min(height, 4000), "deviceScaleFactor": 1, "mobile": mobile})
        if mobile:   # nothing wider than the phone: no sideways scrolling
            assert drv.execute_script("return document.documentElement.scrollWidth") <= width + 1, name
        assert drv.save_screenshot(str(screens_dir() / f"center-{name}{suffix}.png"))
    drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_staff_pairs_a_terminal_in_a_real_browser(browser, center_console, site, enrol):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    url = center_console.url
    t = enrol("rpi-1000000a3f9c2b7e", HCP_ENROLMENT_CONSOLE_URL=f"{url}/console/pair")
    code = code_of(t)
    other = enrol("rpi-10000000c0ffee42")  # a second unpaired terminal in the list
    code_of(other)

    browser.get(f"{url}/console/")
    assert browser.current_url.endswith("/console/login")  # signed out: sent to sign in
    shot(browser, "login")
    browser.find_element(By.NAME, "user").send_keys(STAFF_USER)
    browser.find_element(By.NAME, "password").send_keys(STAFF_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form[action='/console/login'] button").click()
    wait_for(lambda: "rpi-1000000a3f9c2b7e" in browser.page_source, 10,
             f"unpaired terminal listed: {browser.page_source[-2500:]}")
    assert "● 在线" in browser.page_source
    shot(browser, "terminals")

    browser.get(t.pairing.qr_url)  # what the phone opens after scanning the terminal's pairing QR
    assert "code=" not in browser.current_url and "rpi-1000000a3f9c2b7e" in browser.page_source
    assert browser.find_element(By.NAME, "code").get_attribute("value") == ""   # typed, never looked up
    browser.find_element(By.NAME, "code").send_keys(code)
    Select(browser.find_element(By.NAME, "window")).select_by_value("W01")
    shot(browser, "pair")
    browser.find_element(By.CSS_SELECTOR, "form#pair button").click()
    wait_for(lambda: "已配对 rpi-1000000a3f9c2b7e" in browser.page_source, 15, "pairing confirmed in the page")

    paired_idle(t, "W01")  # the terminal switched to its own account and window
    assert t.state.phase == Phase.IDLE and t.pairing is None
    wait_for(lambda: site.reg.status("rpi-1000000a3f9c2b7e") is not None, 10, "terminal status at the center")
    browser.get(f"{url}/console/")
    wait_for(lambda: "在用" in browser.page_source and "● 在线" in browser.page_source, 10, "paired and online")
    shot(browser, "paired")

    # a wrong code through the same form is refused and changes nothing
    browser.find_element(By.NAME, "code").send_keys("000000" if code_of(other) != "000000" else "000001")
    browser.find_element(By.CSS_SELECTOR, "form#pair button").click()
    wait_for(lambda: "unknown, used or expired" in browser.page_source, 10, "refusal shown")
    assert other.mode == "enrolling"

    browser.get(f"{url}/console/users")
    browser.find_element(By.CSS_SELECTOR, "#add-user input[name=name]").send_keys("zhouqi")
    browser.find_element(By.CSS_SELECTOR, "#add-user input[name=password]").send_keys("long enough pw")
    Select(browser.find_element(By.NAME, "role")).select_by_value("supervisor")
    Select(browser.find_element(By.NAME, "windows")).select_by_value("W01")
    browser.find_element(By.CSS_SELECTOR, "#add-user button").click()
    wait_for(lambda: "已新增用户 zhouqi" in browser.page_source, 10, "user added")
    shot(browser, "users")

    browser.get(f"{url}/console/audit")
    src = browser.page_source
    assert f"<td>{STAFF_USER}</td><td>pair</td><td>rpi-1000000a3f9c2b7e</td>" in src   # the pairing service's line
    assert f"<td>{STAFF_USER}</td><td>user-add</td><td>zhouqi</td>" in src
    shot(browser, "audit")
