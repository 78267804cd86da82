"""The phone pages in a real headless Chromium at a phone's viewport (375×812, mobile emulation): rate a
case by tapping as a citizen would (a bad level without a reason first, then a reason and a photo), the
static staff and hall codes, the SMS link and the error pages. Screenshots of every page go to
`screens_dir() / "phone-<name>.png"` (docs/screens/ with `make screens`). The pages have no JavaScript;
the test uses the driver's script only to measure them."""
from __future__ import annotations


import pytest
from sqlalchemy import select

from center.desk import Desk
from center.ledger.record import Record
from center.store import Store, sqlite_url, tables
from center.web.app import create_app
from devkit.waiting import wait_for
from center.web.server import WebServer
from tests.center.test_web_pages import (CASE, hall_token, jpeg, make_settings, qr, seed, sms_link_token_for,
                                         staff_token)
from tests.chromium import chromium
from tests.screenshots import screens_dir

WIDTH, HEIGHT = 375, 812


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path, WIDTH, HEIGHT) as drv:
        phone_viewport(drv, HEIGHT)
        yield drv


def phone_viewport(drv, height: int) -> None:
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": True})


def shot(drv, name: str) -> None:
    """A full-page screenshot at the phone's width."""
    height = int(drv.execute_script("return Math.max(document.documentElement.scrollHeight, %d)" % HEIGHT))
    phone_viewport(drv, height)
    try:
        assert drv.save_screenshot(str(screens_dir() / f"phone-{name}.png"))
    finally:
        phone_viewport(drv, HEIGHT)


@pytest.fixture
def served(tmp_path):
    store = Store(sqlite_url(tmp_path / "center.db"))
    seed(store)
    seed(store, case="SH20260302000018")
    settings = make_settings(tmp_path)
    with WebServer(create_app(Desk(Record(store)), settings)) as web:
        yield web, store, settings
    store.close()


def ratings(store: Store) -> list[dict]:
    with store.read() as conn:
        return [dict(r) for r in conn.execute(select(tables.ratings)).mappings()]


def px(drv, css: str, prop: str) -> float:
    return float(drv.execute_script(
        "return parseFloat(getComputedStyle(document.querySelector(arguments[0]))[arguments[1]])", css, prop))


def test_a_citizen_rates_a_case_on_a_phone(browser, served, tmp_path):
    from selenium.webdriver.common.by import By
    web, store, settings = served
    token = qr()
    browser.get(f"{web.url}/r?t={token}")
    assert "居住证办理" in browser.page_source and "张三" in browser.page_source
    # 适老化, measured in the rendered page: large type, large full-width targets, nothing wider than the phone
    assert px(browser, "body", "fontSize") >= 20 and px(browser, "h1", "fontSize") >= 26
    picks = browser.find_elements(By.CSS_SELECTOR, "label.pick:not(.small)")
    assert [p.text for p in picks] == ["非常满意", "满意", "基本满意", "不满意", "非常不满意"]
    for p in picks:
        assert p.size["height"] >= 56 and p.size["width"] >= WIDTH - 40
    assert browser.find_element(By.CSS_SELECTOR, "button[type=submit]").size["height"] >= 56
    assert int(browser.execute_script("return document.documentElement.scrollWidth")) <= WIDTH
    shot(browser, "case")

    # a bad level and no reason: the form comes back with the message, the level still chosen
    browser.find_element(By.XPATH, "//label[normalize-space()='不满意']").click()
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "请选择不满意的原因" in browser.page_source, 10, "the reasons message")
    assert browser.find_element(By.CSS_SELECTOR, "input[value=dissatisfied]").is_selected()
    assert ratings(store) == []
    shot(browser, "case-error")

    # a reason, a word and a photo: stored
    photo = tmp_path / "counter.jpg"
    photo.write_bytes(jpeg((1200, 900)))
    browser.find_element(By.XPATH, "//label[normalize-space()='等候时间过长']").click()
    browser.find_element(By.NAME, "text").send_keys("等了很久才叫号")
    browser.find_element(By.NAME, "photos").send_keys(str(photo))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "谢谢您的评价" in browser.page_source, 15, "the thank-you page")
    assert browser.current_url.startswith(f"{web.url}/thanks")
    shot(browser, "thanks")
    [row] = ratings(store)
    assert (row["channel"], row["level"], row["reasons"], row["case_id"]) == ("qr", "dissatisfied", "R01", CASE)
    assert len(list(settings.photo_dir.glob("*.jpg"))) == 1

    browser.get(f"{web.url}/r?t={token}")   # the same QR scanned again
    assert "该办件已评价" in browser.page_source
    shot(browser, "already-rated")

    browser.get(f"{web.url}/r?t={token[:-2]}xx")
    assert "二维码无效" in browser.page_source
    shot(browser, "invalid")

    browser.get(f"{web.url}/r?t={qr('SH20260302000018', ttl_s=1, now=0)}")
    assert "二维码已过期" in browser.page_source
    shot(browser, "expired")


def test_static_codes_and_the_sms_link_on_a_phone(browser, served):
    from selenium.webdriver.common.by import By
    web, store, _ = served
    browser.get(f"{web.url}/p/s/{staff_token()}")
    assert "张三" in browser.page_source and "综合受理员" in browser.page_source
    shot(browser, "staff")
    browser.find_element(By.XPATH, "//label[normalize-space()='非常满意']").click()
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "谢谢您的评价" in browser.page_source, 15, "the thank-you page")
    assert [r["channel"] for r in ratings(store)] == ["staff_qr"]

    browser.get(f"{web.url}/p/s/{staff_token()}")   # the same phone, again
    browser.find_element(By.XPATH, "//label[normalize-space()='满意']").click()
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "您已评价过" in browser.page_source, 15, "the limited page")
    shot(browser, "limited")
    assert len(ratings(store)) == 1

    browser.get(f"{web.url}/p/h/{hall_token()}")
    assert "请为本大厅的服务评价" in browser.page_source
    shot(browser, "hall")

    link = sms_link_token_for(store, "SH20260302000018")
    browser.get(f"{web.url}/s/{link}")
    assert "居住证办理" in browser.page_source
    shot(browser, "sms")
    browser.find_element(By.XPATH, "//label[normalize-space()='满意']").click()
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "谢谢您的评价" in browser.page_source, 15, "the thank-you page")
    assert sorted(r["channel"] for r in ratings(store)) == ["sms", "staff_qr"]
    browser.get(f"{web.url}/s/{link}")
    assert "该办件已评价" in browser.page_source
