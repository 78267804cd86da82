"""The daily reconciliation with the city: per day and device, the ratings the center stored against the
ones the city receipted (and, given the city's store, the ones it holds).

`python -m center city reconcile --date 2026-12-01 --center-file center.toml` (or `--db ledger.db`); exit 0
when balanced (every stored rating receipted; the city's count equal when given), 1 when not, 2 on a usage
error. The day is the calendar day of each rating's own time (`ts`, the terminal's local time).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select

from center.store import Store
from center.store.tables import city_delivery as cd, city_records, ratings


@dataclass(frozen=True)
class Line:
    device: str
    stored: int          # ratings the center stored that day
    receipted: int       # … of them the city receipted (stored or duplicate)
    rejected: int        # … the city refused for good (with a reason, in city_delivery)
    open: int            # … not answered yet (pending, offered, or without a delivery state)
    city: int | None = None   # records the city holds for that day and device (when its store is given)

    @property
    def balanced(self) -> bool:
        return self.stored == self.receipted and self.city in (None, self.stored)


@dataclass(frozen=True)
class Report:
    day: str
    lines: tuple[Line, ...]

    @property
    def balanced(self) -> bool:
        return all(line.balanced for line in self.lines)

    def total(self) -> Line:
        cities = [line.city for line in self.lines]
        return Line("total", sum(x.stored for x in self.lines), sum(x.receipted for x in self.lines),
                    sum(x.rejected for x in self.lines), sum(x.open for x in self.lines),
                    None if None in cities else sum(cities))  # type: ignore[arg-type]


def reconcile(store: Store, day: str, center: str | None = None, city: Store | None = None) -> Report:
    """Stored vs receipted per device for `day` (YYYY-MM-DD); `city`: the city stand-in's store, to count
    what the city holds too."""
    date.fromisoformat(day)  # ValueError for anything but a date
    where = func.substr(ratings.c.ts, 1, 10) == day
    if center:
        where = and_(where, ratings.c.center == center)
    q = (select(ratings.c.device, func.count(),
                func.sum(case((cd.c.state == "receipted", 1), else_=0)),
                func.sum(case((cd.c.state == "rejected", 1), else_=0)))
         .select_from(ratings.outerjoin(cd, cd.c.rating_id == ratings.c.id))
         .where(where).group_by(ratings.c.device).order_by(ratings.c.device))
    with store.read() as conn:
        rows = conn.execute(q).all()
    held = city_counts(city, day, center) if city is not None else {}
    devices = sorted({r[0] for r in rows} | set(held))
    by = {r[0]: r for r in rows}
    lines = []
    for d in devices:
        _, stored, receipted, rejected = by.get(d, (d, 0, 0, 0))
        stored, receipted, rejected = int(stored or 0), int(receipted or 0), int(rejected or 0)
        lines.append(Line(d, stored, receipted, rejected, stored - receipted - rejected,
                          held.get(d, 0) if city is not None else None))
    return Report(day, tuple(lines))


def city_counts(city: Store, day: str, center: str | None = None) -> dict[str, int]:
    """Records the city (stand-in) holds per device for `day`."""
    where = city_records.c.day == day
    if center:
        where = and_(where, city_records.c.center == center)
    with city.read() as conn:
        return {d: int(n) for d, n in conn.execute(select(city_records.c.device, func.count())
                                                   .where(where).group_by(city_records.c.device))}


def render(report: Report) -> str:
    with_city = any(line.city is not None for line in report.lines)
    head = ["device", "stored", "receipted", "rejected", "open"] + (["city"] if with_city else [])
    rows = [head] + [[x.device, str(x.stored), str(x.receipted), str(x.rejected), str(x.open)]
                     + ([str(x.city)] if with_city else []) for x in (*report.lines, report.total())]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = [f"city reconciliation for {report.day}"]
    out += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
            for r in rows]
    out.append("balanced: every stored rating is receipted by the city" if report.balanced
               else "NOT balanced: see the devices whose receipted count differs from stored")
    return "\n".join(out)


def reconcile_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m center city reconcile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--date", help="the day, YYYY-MM-DD (default: yesterday in Asia/Shanghai)")
    ap.add_argument("--center-file", help="the center file: its [ledger] database and [center] id")
    ap.add_argument("--db", help="the center's database: a SQLite file or a database URL (instead of the "
                                 "center file's)")
    ap.add_argument("--center", help="only this center's ratings (default: the center file's, else all)")
    ap.add_argument("--city-db", help="the city stand-in's database, to count what the city holds too")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    day = args.date or (datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)).isoformat()
    try:
        date.fromisoformat(day)
    except ValueError:
        print(f"--date: {day!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    db, center = args.db, args.center
    if args.center_file:
        from provisioning import config as center_config
        try:
            cfg = center_config.load(args.center_file)
        except center_config.CenterConfigError as e:
            print(e, file=sys.stderr)
            return 2
        db = db or cfg.ledger.url or str(cfg.ledger.db)
        center = center or cfg.center.id
    if not db:
        print("give --db or --center-file", file=sys.stderr)
        return 2
    for path in (db, args.city_db):
        if path and "://" not in path and not Path(path).exists():
            print(f"no database at {path}", file=sys.stderr)
            return 2
    store = Store(db)
    city = Store(args.city_db) if args.city_db else None
    try:
        report = reconcile(store, day, center, city)
    finally:
        store.close()
        if city is not None:
            city.close()
    if args.json:
        print(json.dumps({"day": report.day, "balanced": report.balanced,
                          "devices": [asdict(x) for x in report.lines], "total": asdict(report.total())}))
    else:
        print(render(report))
    return 0 if report.balanced else 1


if __name__ == "__main__":
    sys.exit(reconcile_main(sys.argv[1:]))
