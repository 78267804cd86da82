"""Center benchmarks (issue 10): the phone pages under load, each beside a bare handler on the same server.

- bare_asgi_p99_ms, bare_asgi_per_s   GET of a one-line ASGI handler (uvicorn, child process), 50 clients
- bare_asgi_post_per_s                POST of a form to distinct URLs, same handler, same load script
- phone_page_p99_ms                   GET of the rating page, 50 clients            | baseline bare_asgi_p99_ms
- phone_submit_per_s                  POST rating, no photo, one case per request   | baseline bare_asgi_post_per_s
                                      (and their ratio, phone_submit_vs_bare_post)
- phone_page_bytes                    first load: the HTML and everything it references (no photos)
- photo_reencode_ms                   one 12-megapixel JPEG through the photo pipeline
- qr_to_terminal_ms_p99 (and _p50)    phone submit → the terminal shows "rated on the phone" (100 cases)

Load comes from Debian's `wrk` (`apt-get install wrk`), a separate C process, so the client is not what
is measured. The server is uvicorn in its own process, one worker, as `python -m center serve` runs it:
the bare handler, then the center's phone app (`phone_app`, over a SQLite file seeded with the center's
catalog, window, staff and open cases). The QR-to-terminal path runs the whole service in this process.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin, urlsplit

from devkit.broker import _stop, _wait_for_port, free_port

SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "10"))
CONNECTIONS = 50
BODY = b"<!doctype html><title>ok</title><p>ok</p>"


# ---- the baseline: one line of ASGI ---------------------------------------------------------------------

async def bare_app(scope, receive, send) -> None:
    """GET or POST → a short HTML page. A POST's body is read to the end, as a form handler would."""
    while scope["method"] == "POST" and (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"%d" % len(BODY))]})
    await send({"type": "http.response.body", "body": BODY})


from center.web.server import SERVER_OPTIONS  # noqa: E402 - the service's own server settings


class Uvicorn:
    """`python -m uvicorn <app>` in a child process on a free loopback port; `.url`, `.stop()`.

    `app` is an import string ("bench.center:bare_app", or a factory with `factory=True`); `env` is added
    to the child's environment (how the center app gets its configuration).
    """

    def __init__(self, app: str, factory: bool = False, env: dict[str, str] | None = None, lifespan: str = "on",
                 access_log: bool = False, log: Path | None = None):
        self.port = free_port()
        self.cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "warning", "--lifespan", lifespan,
                    *(a for k, v in SERVER_OPTIONS.items() for a in (f"--{k}", v))]  # as the service serves
        if factory:
            self.cmd.append("--factory")
        if not access_log:
            self.cmd.append("--no-access-log")
        self.env = {**os.environ, **(env or {})}
        self._own_log = log is None
        self.log = log or Path(tempfile.mkstemp(prefix="hcp-uvicorn-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> "Uvicorn":
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=out, cwd=Path(__file__).parents[1])
        _wait_for_port(self.proc, self.port, time.monotonic() + timeout, "uvicorn", self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
        if self._own_log:
            self.log.unlink(missing_ok=True)

    def __enter__(self) -> "Uvicorn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- wrk --------------------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    """wrk's report (run with --latency) → p50_ms, p75_ms, p90_ms, p99_ms, per_s, requests, non_2xx_3xx,
    socket_errors, and every `lua.<name>: <number>` line a script's done() printed (as `lua.<name>`)."""
    r: dict[str, float] = {}
    dist = out.split("Latency Distribution", 1)
    if len(dist) != 2:
        raise ValueError("no latency distribution in wrk's output (run it with --latency)")
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", dist[1], re.M):
        r[f"p{pct}_ms"] = _ms(value)
    if "p99_ms" not in r:
        raise ValueError("wrk's latency distribution has no 99% line")
    m = re.search(r"^Requests/sec:\s+([\d.]+)\s*$", out, re.M)
    if not m:
        raise ValueError("no Requests/sec in wrk's output")
    r["per_s"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ", out, re.M)
    r["requests"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    r["non_2xx_3xx"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = float(sum(map(int, m.groups()))) if m else 0.0
    for name, value in re.findall(r"^lua\.(\w+):\s*([\d.]+)\s*$", out, re.M):
        r[f"lua.{name}"] = float(value)
    return r


def wrk(url: str, connections: int = CONNECTIONS, seconds: int = SECONDS, script: Path | None = None,
        args: tuple[str, ...] = (), threads: int = 2) -> dict[str, float]:
    """Load `url` with wrk (`-t2 -c50 -d10s --latency` by default; a Lua `script` with its `args`)."""
    exe = shutil.which("wrk")
    if not exe:
        raise RuntimeError("wrk not found: install Debian's wrk package (apt-get install wrk; tools/bootstrap)")
    cmd = [exe, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if args:
        cmd += ["--", *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}")
    return parse_wrk(proc.stdout)


# Each request POSTs the next line of a list file: `path`, `path<TAB>form body`, or `path<TAB>body<TAB>cookie`.
# wrk runs one Lua state per thread: thread k takes lines k, k+n, k+2n, … so no two requests share a line.
# Running past the end starts the thread's share again; done() reports how often (`lua.wrapped`).
POST_LIST_LUA = r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  local nthreads = tonumber(args[2])
  items, idx, wrapped, i = {}, 0, 0, 0
  for line in io.lines(args[1]) do
    if i % nthreads == id then
      local path, body, cookie = line:match("^([^\t]*)\t?([^\t]*)\t?([^\t]*)$")
      local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
      if cookie ~= "" then headers["Cookie"] = cookie end
      table.insert(items, wrk.format("POST", path, headers, body))
    end
    i = i + 1
  end
end
function request()
  idx = idx + 1
  if idx > #items then idx, wrapped = 1, wrapped + 1 end
  return items[idx]
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("wrapped") end
  io.write(string.format("lua.wrapped: %d\n", total))
end
"""


def post_each(url: str, lines: list[str], connections: int = CONNECTIONS, seconds: int = SECONDS,
              threads: int = 2) -> dict[str, float]:
    """POST one request per line (see POST_LIST_LUA) to the server at `url` with wrk; RuntimeError if wrk
    ran out of lines (some were sent twice: make more, e.g. 2 × expected rate × seconds)."""
    with tempfile.TemporaryDirectory(prefix="hcp-wrk-") as tmp:
        script, listing = Path(tmp) / "post_list.lua", Path(tmp) / "requests.txt"
        script.write_text(POST_LIST_LUA)
        listing.write_text("\n".join(lines) + "\n")
        r = wrk(url, connections, seconds, script, (str(listing), str(threads)), threads)
    if r.get("lua.wrapped", 0) > 0:
        raise RuntimeError(f"wrk ran out of distinct requests ({len(lines)} lines for {r['requests']:.0f} "
                           "requests): give it more")
    return r


def bare(seconds: int = SECONDS) -> dict[str, float]:
    """The baselines: GET latency and rate, then POST rate with the same load script as the phone submit."""
    r: dict[str, float] = {}
    with Uvicorn("bench.center:bare_app", lifespan="off") as server:
        get = wrk(server.url + "/", seconds=seconds)
        r["bare_asgi_p99_ms"], r["bare_asgi_per_s"] = get["p99_ms"], get["per_s"]
        n = int(get["per_s"] * seconds * 2) + 1000
        post = post_each(server.url, [f"/r/{i}\tlevel=satisfied&reasons=&text=" for i in range(n)], seconds=seconds)
        r["bare_asgi_post_per_s"] = post["per_s"]
    return r


# ---- the phone figures, given a server or a pipeline ------------------------------------------------------

def phone_page(url: str, seconds: int = SECONDS) -> dict[str, float]:
    """GET the rating page at `url` (a live case's /r?t=… on the center served by `Uvicorn`), 50 clients."""
    r = wrk(url, seconds=seconds)
    if r["non_2xx_3xx"] or r["socket_errors"]:
        raise RuntimeError(f"the phone page answered errors under load: {r}")
    return r


def phone_submit(url: str, lines: list[str], seconds: int = SECONDS) -> dict[str, float]:
    """POST ratings, one distinct case per request: `lines` as POST_LIST_LUA reads them (path, form body,
    cookie if the form needs one). A non-2xx/3xx answer means a case was refused: the figure would lie."""
    r = post_each(url, lines, seconds=seconds)
    if r["non_2xx_3xx"] or r["socket_errors"]:
        raise RuntimeError(f"phone submits failed under load: {r}")
    return r


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" and "stylesheet" in (a.get("rel") or "").split() and a.get("href"):
            self.refs.append(a["href"])
        elif tag in ("script", "img") and a.get("src") and not a["src"].startswith("data:"):
            self.refs.append(a["src"])


def page_bytes(url: str) -> int:
    """First load of the page at `url`: its HTML plus every stylesheet, script and image it references,
    uncompressed (what a phone without gzip would fetch). Refuses references to another origin."""
    import httpx
    with httpx.Client(headers={"Accept-Encoding": "identity"}, timeout=10) as client:
        page = client.get(url)
        page.raise_for_status()
        parser = _Refs()
        parser.feed(page.text)
        total = len(page.content)
        origin = urlsplit(url)[:2]
        for ref in dict.fromkeys(parser.refs):
            full = urljoin(str(page.url), ref)
            if urlsplit(full)[:2] != origin:
                raise RuntimeError(f"the page loads from another origin: {full}")
            sub = client.get(full)
            sub.raise_for_status()
            total += len(sub.content)
    return total


def twelve_megapixel_jpeg(width: int = 4000, height: int = 3000) -> bytes:
    """A phone-like photo: 12 MP, noisy detail (so JPEG cannot shortcut it), EXIF with a GPS position."""
    from PIL import Image
    noise = Image.effect_noise((width, height), 48)
    grad = Image.linear_gradient("L").resize((width, height))
    img = Image.merge("RGB", (noise, grad, Image.blend(noise, grad, 0.5)))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "BenchPhone", "BP-1"  # Make, Model
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (31.0, 14.0, 0.0), "E", (121.0, 28.0, 0.0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


def photo_reencode_ms(reencode: Callable[[bytes], object], n: int = 5) -> float:
    """Median time of `reencode(jpeg_bytes)` (the center's photo pipeline) on one 12-megapixel JPEG."""
    data = twelve_megapixel_jpeg()
    reencode(data)  # warm: imports, codec tables
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        reencode(data)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def qr_to_terminal_ms(terminal, open_case: Callable[[int], str], submit: Callable[[str], None],
                      n: int = 100) -> list[float]:
    """For each of `n` cases: `open_case(i)` → case id, returning once the terminal shows that case;
    then the clock runs from `submit(case_id)` (the phone's POST) until the terminal's core reports
    RATED_ELSEWHERE for that case. Returns the n times in ms (take pct(…, 99))."""
    from device.machine import Phase
    seen = threading.Event()
    stamp = [0.0]
    current = [""]

    def watch(snap) -> None:
        st = snap.state
        if (st.phase == Phase.RATED_ELSEWHERE and st.case is not None and st.case.id == current[0]
                and not seen.is_set()):
            stamp[0] = time.perf_counter()
            seen.set()

    terminal.watch(watch)
    out = []
    for i in range(n):
        case_id = open_case(i)
        current[0] = case_id
        seen.clear()
        t0 = time.perf_counter()
        submit(case_id)
        if not seen.wait(10):
            raise RuntimeError(f"the terminal never showed case {case_id} as rated on the phone")
        out.append((stamp[0] - t0) * 1000)
    return out


# ---- the center's phone pages, served like the bare handler ----------------------------------------------

CENTER, WINDOW, STAFF_ID, DEVICE = "C1", "W01", "S0101", "bench-t1"
KEY_ID = "bench"
# The suite's own QR signing key (not the demo key, not the tests' key); it signs nothing outside a run.
KEY = hashlib.sha256(b"hcp bench qr key").digest()
ENV_DB, ENV_PHOTOS = "HCP_BENCH_DB", "HCP_BENCH_PHOTOS"


def phone_app():
    """uvicorn factory (`bench.center:phone_app`): the center's phone pages over the SQLite file named by
    HCP_BENCH_DB, as `center.service` assembles them, without the MQTT parts (intake, notices sender) and
    the SMS worker, which the page and submit figures do not use. The notices a rating owes are still
    written, in the rating's transaction, as in the service."""
    from center.desk import Desk
    from center.ledger.record import Record
    from center.store import Store
    from center.web.app import create_app
    from center.web.settings import WebSettings
    record = Record(Store(os.environ[ENV_DB]), sms_policy=None)
    settings = WebSettings(centers=frozenset({CENTER}), qr_keys={KEY_ID: KEY}, static_keys={"s1": KEY},
                           photo_dir=Path(os.environ[ENV_PHOTOS]), cookie_secret=KEY)
    return create_app(Desk(record), settings)


def token(case_id: str, ttl_s: int = 3600) -> str:
    from protocol import qrtoken
    return qrtoken.sign(KEY_ID, KEY, center=CENTER, case=case_id, window=WINDOW, staff=STAFF_ID, device=DEVICE,
                        ttl_s=ttl_s)


def seed(db: Path, case_ids: list[str]) -> None:
    """The center as its published messages would have left it: the hall, the catalog, the window and its
    staff, and the given cases open (written straight into the store)."""
    import json
    from sqlalchemy import insert
    from center.ledger.record import upsert
    from center.store import Store
    from center.store.tables import cases, catalogs, centers, staff, windows
    from devkit import factories
    from protocol import ids
    now, st = time.time(), factories.STAFF[0]
    store = Store(db)
    try:
        with store.write() as conn:
            upsert(conn, centers, dict(center=CENTER, name="基准测试政务服务中心", updated=now), ("center",))
            upsert(conn, catalogs, dict(center=CENTER, version=factories.CATALOG_VERSION, updated=now,
                                        reasons=json.dumps(factories.REASONS, ensure_ascii=False)),
                   ("center", "version"))
            upsert(conn, windows, dict(center=CENTER, window=WINDOW, name="一号窗口", updated=now), ("center", "window"))
            upsert(conn, staff, dict(center=CENTER, staff_id=STAFF_ID, name=st["name"], number=st["number"],
                                     window=WINDOW, updated=now), ("center", "staff_id"))
            item_code, item_name = factories.ITEMS[0]
            opened = ids.wall_time()
            conn.execute(insert(cases), [dict(
                center=CENTER, case_id=c, window=WINDOW, staff=STAFF_ID, state="open", updated=now,
                item_code=item_code, item_name=item_name, staff_name=st["name"], staff_number=st["number"],
                applicant=factories.APPLICANT["token"], opened_at=opened) for c in case_ids])
    finally:
        store.close()


def phone(work: Path, seconds: int = SECONDS, cases: int = 40_000) -> dict[str, float]:
    """phone_page_p99_ms, phone_page_bytes and phone_submit_per_s on the center app in a uvicorn child.

    `cases` open cases are seeded for the submits: each POST rates a different one (wrk refuses to send
    one twice, and a second rating of a case would be answered 409 and stop the run)."""
    from sqlalchemy import func, select
    from center.store import Store
    from center.store.tables import ratings
    db, photo_dir = work / "phone.db", work / "photos"
    photo_dir.mkdir()
    submit_ids = [f"B{i:06d}" for i in range(cases)]
    seed(db, ["PAGE1", *submit_ids])
    r: dict[str, float] = {}
    with Uvicorn("bench.center:phone_app", factory=True, env={ENV_DB: str(db), ENV_PHOTOS: str(photo_dir)}) as server:
        page = f"{server.url}/r?t={token('PAGE1')}"
        r["phone_page_bytes"] = float(page_bytes(page))
        r["phone_page_p99_ms"] = phone_page(page, seconds)["p99_ms"]
        lines = [f"/r\tt={token(c)}&level=satisfied&text=" for c in submit_ids]
        sub = phone_submit(server.url, lines, seconds)
        r["phone_submit_per_s"] = sub["per_s"]
    store = Store(db)
    try:
        with store.read() as conn:
            stored = conn.execute(select(func.count()).select_from(ratings).where(ratings.c.channel == "qr")).scalar()
    finally:
        store.close()
    if stored < sub["requests"]:
        raise RuntimeError(f"wrk counted {sub['requests']:.0f} submits answered but only {stored} ratings are stored")
    return r


def qr_to_terminal(work: Path, n: int = 100) -> list[float]:
    """The whole path of a phone rating on a real bench: Mosquitto, the center service (record, MQTT intake,
    notices sender, phone pages), the fake center's case system publishing cases, and a terminal core.
    Each case is opened, its QR token taken from the terminal's screen and posted as the phone would."""
    from dataclasses import replace
    from urllib.parse import parse_qs
    import httpx
    from center.service import CenterService, demo_options
    from devkit.broker import Broker
    from devkit.center import Center
    from devkit.terminals import terminal_config, terminals
    from devkit.waiting import wait_for
    (work / "broker").mkdir()
    with Broker(workdir=str(work / "broker")) as broker:
        options = replace(demo_options(work / "center", broker.port, free_port(), center=CENTER),
                          qr_keys={KEY_ID: KEY})
        service = CenterService(options).start()
        center = Center(broker.port, center=CENTER, window=WINDOW)
        try:
            center.catalog()
            center.duty()
            with terminals() as start, httpx.Client(base_url=service.web.url, timeout=10) as phone_client:
                term = start(terminal_config(broker.port, work / "terminal", HCP_DEVICE_ID=DEVICE,
                                             HCP_DEVICE_LOG_LEVEL="ERROR", HCP_QR_KEY=KEY.hex(),
                                             HCP_QR_KEY_ID=KEY_ID), DEVICE)
                tokens: dict[str, str] = {}

                def open_case(i: int) -> str:
                    case_id = f"Q{i:05d}"
                    center.case(case_id)

                    def shown() -> bool:
                        st = term.snapshot.state
                        return st.case is not None and st.case.id == case_id and st.qr is not None

                    wait_for(shown, what=f"the terminal shows case {case_id}", timeout=10)
                    wait_for(lambda: service.desk.case(CENTER, case_id) is not None,
                             what=f"the center recorded case {case_id}", timeout=10)
                    tokens[case_id] = parse_qs(urlsplit(term.snapshot.state.qr.url).query)["t"][0]
                    return case_id

                def submit(case_id: str) -> None:
                    answer = phone_client.post("/r", data={"t": tokens[case_id], "level": "satisfied"})
                    if answer.status_code != 303:
                        raise RuntimeError(f"the phone submit of {case_id} was answered {answer.status_code}")

                return qr_to_terminal_ms(term, open_case, submit, n)
        finally:
            center.close()
            service.stop()


def run() -> dict[str, float]:
    from center.web import photos
    work = Path(tempfile.mkdtemp(prefix="hcp-bench-center-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    try:
        r = bare()
        r.update(phone(work))
        r["phone_submit_vs_bare_post"] = r["phone_submit_per_s"] / r["bare_asgi_post_per_s"]
        r["photo_reencode_ms"] = photo_reencode_ms(photos.reencode)
        times = qr_to_terminal(work)
        r["qr_to_terminal_ms_p50"] = statistics.median(times)
        r["qr_to_terminal_ms_p99"] = pct(times, 99)
        return r
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k:<28}{v:>12.3f}")
