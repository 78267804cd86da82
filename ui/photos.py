"""Staff photos: fetched once in the background from the https URL in the duty message, kept on disk.

The idle screen asks `cache.get(url)`: a file path when the photo is there, else None (and a fetch
starts, once per URL per run); a fetched photo triggers `on_ready(url)` from the fetch thread. A
missing, slow or broken photo only means the initial-letter avatar stays.
"""
from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import urllib.request
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

MAX_BYTES = 1 << 20
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # PNG, JPEG


class PhotoCache:
    def __init__(self, folder: str | Path, on_ready: Callable[[str], None] = lambda url: None,
                 ca_file: str = "", timeout_s: float = 10.0):
        self.folder = Path(folder)
        self.on_ready = on_ready
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self._tried: set[str] = set()
        self._lock = threading.Lock()

    def path(self, url: str) -> Path:
        return self.folder / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".img")

    def get(self, url: str) -> Path | None:
        if not url:
            return None
        p = self.path(url)
        if p.is_file():
            return p
        with self._lock:
            if url in self._tried:
                return None
            self._tried.add(url)
        threading.Thread(target=self._fetch, args=(url,), name="photo-fetch", daemon=True).start()
        return None

    def _fetch(self, url: str) -> None:
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file or None) if url.startswith("https:") else None
            with urllib.request.urlopen(url, timeout=self.timeout_s, context=ctx) as r:
                data = r.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES or not data.startswith(MAGIC):
                raise ValueError("not a PNG or JPEG under 1 MiB")
            self.folder.mkdir(parents=True, exist_ok=True)
            p = self.path(url)
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(p)
        except Exception as e:  # noqa: BLE001 - any failure just keeps the avatar
            log.warning("staff photo %s not fetched: %s", url, e)
            return
        self.on_ready(url)
