"""bench/center.py's own parts: the wrk report parser (property-based: it reads another program's output),
the Lua script that posts each listed request once, and the phone app factory the suite serves.
No figures are checked here: `make bench` measures."""
from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest
from hypothesis import example, given, settings, strategies as st

from bench import center as bench
from center.web.server import WebServer

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}

duration = st.tuples(st.integers(0, 99_999).map(lambda n: n / 100), st.sampled_from(sorted(UNITS)))


@st.composite
def wrk_reports(draw) -> tuple[str, dict[str, float]]:
    """A report as wrk 4 prints it with --latency (and a Lua done() that writes `lua.<name>: <n>` lines),
    with what parse_wrk should read from it."""
    pcts = {p: draw(duration) for p in (50, 75, 90, 99)}
    requests = draw(st.integers(0, 10**9))
    per_s = draw(st.integers(0, 10**9)) / 100
    non_2xx = draw(st.none() | st.integers(1, 10**6))
    errors = draw(st.none() | st.tuples(*[st.integers(0, 10**5)] * 4))
    lua = draw(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.integers(0, 10**6), max_size=3))
    lines = ["Running 10s test @ http://127.0.0.1:8080/r?t=1~bench~C1~B000001",
             "  2 threads and 50 connections",
             "  Thread Stats   Avg      Stdev     Max   +/- Stdev",
             "    Latency     5.12ms    2.01ms  30.00ms   80.00%",
             "    Req/Sec     4.80k   300.00     5.50k    70.00%",
             "  Latency Distribution"]
    lines += [f"    {p:>2}%{v:>10.2f}{u}" for p, (v, u) in pcts.items()]
    lines.append(f"  {requests} requests in 10.01s, 12.34MB read")
    if errors:
        lines.append("  Socket errors: connect {}, read {}, write {}, timeout {}".format(*errors))
    if non_2xx:
        lines.append(f"  Non-2xx or 3xx responses: {non_2xx}")
    lines += [f"Requests/sec: {per_s:>10.2f}", "Transfer/sec:      1.23MB"]
    lines += [f"lua.{k}: {v}" for k, v in lua.items()]
    want = {f"p{p}_ms": v * UNITS[u] for p, (v, u) in pcts.items()}
    want.update(per_s=per_s, requests=float(requests), non_2xx_3xx=float(non_2xx or 0),
                socket_errors=float(sum(errors or ())), **{f"lua.{k}": float(v) for k, v in lua.items()})
    return "\n".join(lines) + "\n", want


@given(wrk_reports())
def test_parse_wrk_reads_what_wrk_prints(report) -> None:
    text, want = report
    got = bench.parse_wrk(text)
    assert got == pytest.approx(want)


@given(wrk_reports(), st.data())
def test_a_report_cut_short_is_refused(report, data) -> None:
    """Any prefix that ends before the request rate is refused, whatever line it cuts."""
    text, _ = report
    cut = data.draw(st.integers(0, text.index("Requests/sec:") + len("Requests/sec:")))
    with pytest.raises(ValueError):
        bench.parse_wrk(text[:cut])


@given(wrk_reports(), st.text(st.characters(blacklist_categories=("Zs", "Cc", "Nd")), min_size=1, max_size=8))
@example(("  Latency Distribution\n     99%    1.00ms\nRequests/sec: 1.00\n", {}), "1.2.3ms")
@example(("  Latency Distribution\n     99%    1.00ms\nRequests/sec: 1.00\n", {}), "12")
@example(("  Latency Distribution\n     99%    1.00ms\nRequests/sec: 1.00\n", {}), "-1ms")
def test_a_latency_that_is_not_a_duration_is_refused(report, junk) -> None:
    """Without a digit nothing is a duration (and a few near misses with digits)."""
    text, _ = report
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("99%"))
    with pytest.raises(ValueError):
        bench.parse_wrk(text.replace(line, f"     99%    {junk}"))


@given(st.text(max_size=2000))
@settings(max_examples=300)
def test_junk_is_refused(junk) -> None:
    with pytest.raises(ValueError):
        bench.parse_wrk(junk)


def test_parse_wrk_reads_a_real_run() -> None:
    with bench.Uvicorn("bench.center:bare_app", lifespan="off") as server:
        r = bench.wrk(server.url + "/", connections=4, seconds=1)
    assert r["requests"] > 0 and r["per_s"] > 0
    assert 0 < r["p50_ms"] <= r["p75_ms"] <= r["p90_ms"] <= r["p99_ms"]
    assert r["non_2xx_3xx"] == 0 and r["socket_errors"] == 0


class Recorder:
    """An ASGI app that answers 200 and remembers every path it was posted to, and with which body."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        with self.lock:
            self.seen.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


def test_post_each_sends_every_line_at_most_once() -> None:
    app = Recorder()
    lines = [f"/case/{i}\tlevel=satisfied&n={i}" for i in range(200_000)]
    with WebServer(app) as server:
        r = bench.post_each(server.url, lines, connections=8, seconds=1)
    paths = Counter(path for path, _ in app.seen)
    assert r["requests"] > 0 and len(app.seen) >= r["requests"]
    assert max(paths.values()) == 1
    listed = {ln.split("\t")[0]: ln.split("\t")[1].encode() for ln in lines}
    assert all(listed[path] == body for path, body in app.seen)


def test_post_each_refuses_to_send_a_line_twice() -> None:
    with WebServer(Recorder()) as server:
        with pytest.raises(RuntimeError, match="ran out of distinct requests"):
            bench.post_each(server.url, ["/a\tx=1", "/b\tx=2"], connections=2, seconds=1)


def test_phone_app_serves_the_seeded_cases(tmp_path) -> None:
    """The suite's factory in its own uvicorn child: the page of a seeded case, one submit, then 已评价."""
    db, photo_dir = tmp_path / "phone.db", tmp_path / "photos"
    photo_dir.mkdir()
    bench.seed(db, ["B1", "B2"])
    env = {bench.ENV_DB: str(db), bench.ENV_PHOTOS: str(photo_dir)}
    with bench.Uvicorn("bench.center:phone_app", factory=True, env=env) as server:
        page = f"{server.url}/r?t={bench.token('B1')}"
        first = httpx.get(page)
        assert first.status_code == 200 and "满意" in first.text and "居住证办理" in first.text
        assert bench.page_bytes(page) >= len(first.content)
        assert httpx.get(f"{server.url}/r?t={bench.token('NOPE')}").status_code == 404
        sent = httpx.post(f"{server.url}/r", data={"t": bench.token("B1"), "level": "satisfied"})
        assert sent.status_code == 303
        assert httpx.post(f"{server.url}/r", data={"t": bench.token("B1"), "level": "satisfied"}).status_code == 409
        assert httpx.get(f"{server.url}/r?t={bench.token('B2')}").status_code == 200
