"""A supervisor follows up a 差评 in a real headless Chromium, at a desktop and at a phone width: the list
with the overdue follow-up highlighted, the detail, a step taken by pressing its button (the CSRF token
rides in the form). Screenshots: `screens_dir() / "center-followup*.png"`."""
from __future__ import annotations


import pytest
from fastapi import FastAPI

from center.accounts import create_user, start_session
from center.followup import store as fstore
from center.store import Store, sqlite_url
from center.web.auth import SignInRequired, sign_in_redirect
from center.web.console.followups import router
from devkit.waiting import wait_for
from center.web.server import WebServer
from tests.center.test_followup_pages import Clock
from tests.center.test_followup_store import APPLICANT, DAY, NOW, rating
from tests.chromium import chromium
from tests.screenshots import screens_dir

SIZES = {"desktop": (1280, 800), "phone": (375, 812)}


@pytest.fixture(params=list(SIZES))
def browser(request, tmp_path):
    width, height = SIZES[request.param]
    with chromium(tmp_path, width, height) as drv:
        drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                  "deviceScaleFactor": 1,
                                                                  "mobile": request.param == "phone"})
        drv.size_name, drv.width = request.param, width
        yield drv


@pytest.fixture
def served(tmp_path):
    store = Store(sqlite_url(tmp_path / "center.db"))
    create_user(store, "lee", "password-123456", "supervisor", frozenset({"W1"}), now=NOW)
    app = FastAPI()
    app.state.store, app.state.clock = store, Clock(NOW + 2 * DAY)    # the contact clock has run out
    app.add_exception_handler(SignInRequired, sign_in_redirect)
    app.include_router(router)
    with WebServer(app) as web:
        yield web, store
    store.close()


def shot(drv, name: str) -> None:
    height = int(drv.execute_script("return document.documentElement.scrollHeight"))
    drv.set_window_size(drv.width, max(height, 600))
    assert drv.save_screenshot(str(screens_dir() / f"center-{name}-{drv.size_name}.png"))


def test_a_supervisor_follows_up_a_bad_rating(browser, served) -> None:
    from selenium.webdriver.common.by import By
    web, store = served
    r = rating(store, window="W1")
    rating(store, window="W2", case="K2")     # another window's: never shown to lee
    token, _ = start_session(store, "lee")
    browser.get(f"{web.url}/console/followups?show=all")
    assert browser.current_url.endswith("/console/login")      # not signed in yet (the page itself is elsewhere)
    browser.add_cookie({"name": "hcp_s", "value": token, "path": "/"})
    browser.get(f"{web.url}/console/followups")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.followup")
    assert [row.get_attribute("data-id") for row in rows] == [r["id"]]
    assert "overdue" in rows[0].get_attribute("class")
    cell = rows[0].find_element(By.CSS_SELECTOR, "td")
    assert browser.execute_script("return getComputedStyle(arguments[0]).backgroundColor", cell) == "rgb(253, 236, 234)"
    assert int(browser.execute_script("return document.documentElement.scrollWidth")) <= browser.width
    shot(browser, "followups")

    rows[0].find_element(By.CSS_SELECTOR, "a").click()
    wait_for(lambda: "差评整改详情" in browser.title, 10, "the detail page")
    assert "超期：联系核实" in browser.page_source and APPLICANT not in browser.page_source
    assert int(browser.execute_script("return document.documentElement.scrollWidth")) <= browser.width
    shot(browser, "followup")
    form = browser.find_element(By.CSS_SELECTOR, "form.step")
    form.find_element(By.NAME, "note").send_keys("已电话联系群众，情况属实")
    form.find_element(By.CSS_SELECTOR, "button[value=contact]").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "button[value=answer]"), 10, "the next step")
    assert "已电话联系群众，情况属实" in browser.page_source
    with store.read() as conn:
        assert fstore.get(conn, r["id"]).state == "contacted"
