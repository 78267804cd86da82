"""Debian's headless Chromium driven by selenium through Debian's chromedriver (nothing is downloaded; `make
test` installs both, and chromium-l10n for Chinese browser strings). One launcher for every browser test."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", "/usr/bin/chromedriver"


@contextmanager
def chromium(profile_dir: Path, width: int, height: int) -> Iterator:
    """A headless Chromium at `width`×`height` CSS pixels, in Chinese, with a fresh profile."""
    os.environ["SE_OFFLINE"] = "true"  # selenium must not try to fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile_dir / 'chromium-profile'}",
                f"--window-size={width},{height}", "--lang=zh-CN"):
        opts.add_argument(arg)
    # Chromium takes its own UI language (e.g. the file button) from the environment on Linux.
    service = Service(DRIVER, log_output=str(profile_dir / "chromedriver.log"),
                      env={**os.environ, "LANGUAGE": "zh_CN"})
    drv = webdriver.Chrome(service=service, options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()
