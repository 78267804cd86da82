"""The supervisor's data in a real headless Chromium (desktop and phone widths): sign in, today's ratings,
the monthly per-staff report, and its CSV downloaded as Excel would open it (UTF-8 with BOM).
Screenshots `center-ratings-*.png`."""
from __future__ import annotations

import csv
import io

import pytest

from center import accounts
from center.desk import Desk
from center.ledger.record import Record
from center.queries import Queries
from center.web.app import create_app
from center.web.console import install
from center.web.console.ratings import ratings_router
from center.web.data import data_router
from center.web.server import WebServer
from center.web.settings import WebSettings
from devkit.waiting import wait_for
from tests.center.test_queries import APPLICANT, seed
from tests.chromium import chromium
from tests.screenshots import screens_dir

PASSWORD = "correct horse battery"
SIZES = {"desktop": (1280, 900), "phone": (375, 812)}


@pytest.fixture
def site(store, tmp_path):
    seed(store)
    settings = WebSettings(centers=frozenset({"C001"}), qr_keys={}, static_keys={"s1": b"s" * 32},
                           photo_dir=tmp_path / "photos", cookie_secret=b"c" * 32)
    app = create_app(Desk(Record(store)), settings)
    queries = Queries(store, "Asia/Shanghai")
    install(app, None, store, settings, center_name="浦东新区市民中心", windows=(("W01", "一号窗口"),))
    app.include_router(data_router(queries, centers=frozenset({"C001"})))
    app.include_router(ratings_router(queries, "C001"))
    accounts.create_user(store, "sup", PASSWORD, "supervisor", frozenset({"W01"}))
    with WebServer(app) as web:
        yield web.url


@pytest.mark.parametrize("size", list(SIZES))
def test_a_supervisor_reads_today_the_month_and_downloads_the_csv(site, tmp_path, size):
    from selenium.webdriver.common.by import By
    width, height = SIZES[size]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with chromium(tmp_path, width, height) as drv:
        drv.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                  "deviceScaleFactor": 1, "mobile": size == "phone"})
        drv.get(f"{site}/console/login")
        drv.find_element(By.NAME, "user").send_keys("sup")
        drv.find_element(By.NAME, "password").send_keys(PASSWORD)
        drv.find_element(By.CSS_SELECTOR, "form button").click()
        wait_for(lambda: not drv.current_url.endswith("/login"), what="signed in")
        drv.get(f"{site}/console/ratings")
        assert "今日评价" in drv.page_source
        drv.save_screenshot(str(screens_dir() / f"center-ratings-today-{size}.png"))
        drv.get(f"{site}/console/ratings/report?month=2026-11")
        assert "张三" in drv.page_source and "满意率" in drv.page_source
        assert drv.execute_script("return document.documentElement.scrollWidth") <= width + 1  # no sideways scroll
        drv.save_screenshot(str(screens_dir() / f"center-ratings-report-{size}.png"))
        drv.find_element(By.PARTIAL_LINK_TEXT, "CSV").click()
        got = wait_for(lambda: [p for p in downloads.iterdir() if p.suffix == ".csv"], 20, "the CSV downloaded")
    data = got[0].read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "a BOM: Excel opens it as UTF-8"
    header, *rows = list(csv.reader(io.StringIO(data[3:].decode("utf-8"))))
    window = header.index("窗口") if "窗口" in header else header.index("window")
    assert rows and {r[window] for r in rows} == {"W01"}, "a supervisor's export holds only their windows"
    assert APPLICANT.encode() not in data, "no applicant token in an export"
