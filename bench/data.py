"""The center's own data (issue 11) on PostgreSQL with 1,000,000 ratings in one month:

- `export_rows_per_s`: `GET /api/v1/ratings.csv` of all of them, streamed over HTTP by the real app (uvicorn
  in this process), read to the end by a separate client (curl, writing to /dev/null);
- `raw_sql_rows_per_s`: the baseline — the same SELECT (compiled from the same query layer) written straight
  to a file by PostgreSQL's COPY through psycopg, no HTTP, no app;
- `raw_fetch_rows_per_s`: for reference, the same SELECT fetched row by row by the driver and written
  with Python's csv module;
- `summary_ms_1m`: the per-staff month summary (`Queries.monthly_staff_report`, what the report page and
  `/api/v1/summary?by=staff` run) over the 1,000,000 ratings, median of 7 after a warm-up.

The ratings are made inside PostgreSQL (INSERT … SELECT generate_series: 40 staff at 20 windows, 50 items,
a realistic spread of levels, reasons on the bad ones), then ANALYZE.
One suite on its own: `python -c "from bench.run import run_suite; print(run_suite('bench.data'))"`.
"""
from __future__ import annotations

import csv
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

from sqlalchemy import text

ROWS = int(os.environ.get("BENCH_DATA_ROWS", "1000000"))
MONTH = "2026-11"
TZ = "Asia/Shanghai"

SEED = """
INSERT INTO ratings (id, center, "window", device, seq, ts, kind, level, channel, case_id, item_code, staff,
                     applicant, reasons, catalog, first, received, flags)
SELECT md5(g::text), 'C001', 'W' || lpad((g % 20)::text, 2, '0'), 'T' || lpad((g % 20)::text, 4, '0'), g,
       to_char(to_timestamp(:start + g * :step) AT TIME ZONE 'Asia/Shanghai',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"+08:00"'),
       'rating', lv.level, CASE WHEN g % 10 = 0 THEN 'qr' ELSE 'touch' END, 'K' || g,
       'I' || lpad((g % 50)::text, 3, '0'),
       'S' || lpad((g % 40)::text, 3, '0'), md5('a' || g::text),
       CASE WHEN lv.level IN ('dissatisfied', 'very_dissatisfied') THEN
            CASE WHEN g % 3 = 0 THEN 'R1,R2' ELSE 'R3' END END,
       CASE WHEN lv.level IN ('dissatisfied', 'very_dissatisfied') THEN 'v1' END,
       1, :start + g * :step, NULL
FROM generate_series(1, :rows) AS g,
     LATERAL (SELECT CASE WHEN (g * 37) % 100 < 60 THEN 'very_satisfied' WHEN (g * 37) % 100 < 85 THEN 'satisfied'
                          WHEN (g * 37) % 100 < 93 THEN 'basically_satisfied'
                          WHEN (g * 37) % 100 < 97 THEN 'dissatisfied' ELSE 'very_dissatisfied' END AS level) lv
"""


def seed(store, queries, rows: int) -> None:
    start = queries.midnight(date(2026, 11, 1))
    step = (queries.midnight(date(2026, 12, 1)) - start - 60) / rows   # all within the month
    with store.write() as conn:
        conn.execute(text(SEED), {"start": start, "step": step, "rows": rows})
        conn.execute(text("INSERT INTO staff (center, staff_id, name, updated) SELECT 'C001', "
                          "'S' || lpad(g::text, 3, '0'), '工作人员' || g, 0 FROM generate_series(0, 39) g"))
        conn.execute(text("INSERT INTO catalogs (center, version, reasons, updated) VALUES ('C001', 'v1', "
                          "'[{\"code\":\"R1\",\"zh\":\"态度不好\"},{\"code\":\"R2\",\"zh\":\"等待时间长\"},"
                          "{\"code\":\"R3\",\"zh\":\"材料反复提交\"}]', 1)"))
        # The index asked for in the store (center/store/tables.py `ratings_by_received`), if not there yet.
        conn.execute(text('CREATE INDEX IF NOT EXISTS ratings_by_received ON ratings (center, received, id)'))
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE ratings"))


def export_over_http(url: str, key: str, out: Path) -> tuple[float, int]:
    """(seconds, bytes) for curl to read the whole CSV export."""
    t0 = time.perf_counter()
    proc = subprocess.run(["curl", "-sS", "--fail", "-o", str(out), "-w", "%{size_download}",
                           "-H", f"Authorization: Bearer {key}", f"{url}/api/v1/ratings.csv?center=C001"],
                          stdout=subprocess.PIPE, text=True, check=True)
    return time.perf_counter() - t0, int(proc.stdout)


def raw_copy(store, queries, out: Path) -> float:
    """The same SELECT, COPY'd by PostgreSQL straight into a file."""
    from center.queries import Filters
    q = queries.csv_query(Filters(center="C001"), zh=False, sql_time=True)
    sql = str(q.compile(dialect=store.engine.dialect, compile_kwargs={"literal_binds": True}))
    t0 = time.perf_counter()
    with store.read() as conn, open(out, "wb") as f:
        conn.exec_driver_sql("SELECT set_config('TimeZone', %(tz)s, true)", {"tz": TZ})
        with conn.connection.driver_connection.cursor() as cur, \
                cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
            for data in copy:
                f.write(data)
    return time.perf_counter() - t0


def raw_fetch(store, queries, out: Path) -> float:
    """The same SELECT fetched by the driver (server-side cursor) and written with the csv module."""
    from center.queries import Filters
    q = queries.csv_query(Filters(center="C001"), zh=False, sql_time=True)
    sql = str(q.compile(dialect=store.engine.dialect, compile_kwargs={"literal_binds": True}))
    t0 = time.perf_counter()
    with store.read() as conn, open(out, "w", newline="", encoding="utf-8") as f:
        conn.exec_driver_sql("SELECT set_config('TimeZone', %(tz)s, true)", {"tz": TZ})
        w = csv.writer(f, lineterminator="\n")
        with conn.connection.driver_connection.cursor(name="raw") as cur:
            cur.itersize = 10_000
            cur.execute(sql)
            while rows := cur.fetchmany(10_000):
                w.writerows(rows)
    return time.perf_counter() - t0


def run() -> dict[str, float]:
    from center import apikeys
    from center.desk import Desk
    from center.ledger.record import Record
    from center.queries import Queries
    from center.store import Store
    from center.web.app import create_app
    from center.web.data import data_router
    from center.web.server import WebServer
    from center.web.settings import WebSettings
    from devkit.postgres import Postgres

    work = Path(tempfile.mkdtemp(prefix="hcp-bench-data-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    pg = Postgres().start()
    try:
        store = Store(pg.new_database("bench_data"))
        queries = Queries(store, TZ)
        seed(store, queries, ROWS)
        summary = []
        queries.monthly_staff_report("C001", MONTH)           # warm-up: plans, caches
        for _ in range(7):
            t0 = time.perf_counter()
            groups = queries.monthly_staff_report("C001", MONTH)
            summary.append((time.perf_counter() - t0) * 1000)
        assert len(groups) == 40 and sum(g["total"] for g in groups) == ROWS, "the summary missed ratings"

        raw_copy(store, queries, work / "warm.csv")
        raw_s = min(raw_copy(store, queries, work / "raw.csv") for _ in range(2))
        fetch_s = raw_fetch(store, queries, work / "fetch.csv")

        settings = WebSettings(centers=frozenset({"C001"}), qr_keys={"k": b"k" * 32}, static_keys={"c": b"c" * 32},
                               photo_dir=work / "photos", cookie_secret=b"s" * 32)
        app = create_app(Desk(Record(store)), settings)
        app.include_router(data_router(queries))
        _, key = apikeys.create_key(store, "bench")
        with WebServer(app) as web:
            runs = [export_over_http(web.url, key, work / "export.csv") for _ in range(2)]
        http_s, size = min(runs)
        lines = sum(1 for _ in open(work / "export.csv", "rb"))
        assert lines >= ROWS + 1, f"the export had {lines} lines"
        store.close()
        return {"export_rows_per_s": ROWS / http_s, "raw_sql_rows_per_s": ROWS / raw_s,
                "export_vs_raw_sql": raw_s / http_s, "raw_fetch_rows_per_s": ROWS / fetch_s,
                "export_mb_per_s": size / http_s / 1e6, "summary_ms_1m": statistics.median(summary)}
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k:<28}{v:>14.3f}")
