"""`make fleet`: run the fleet simulator's scenarios, write bench/fleet.json and docs/fleet.md (+ plots).

    python -m bench.fleet                 # the issue's sizes (2,000 terminals; about an hour)
    python -m bench.fleet --quick         # smaller and shorter (development)
    python -m bench.fleet --only storm,city --out /tmp/f.json --doc /tmp/fleet.md
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("steady", "storm", "kill", "slow", "city", "powercut", "workers")
FLEET_SCENARIOS = ("steady", "storm", "kill", "slow", "city")  # those with `<name>_lost` and `_duplicated`


def run(names: list[str], plan, workdir: Path, quick: bool, kind: str = "mosquitto", workers: int = 1,
        log=print, after_each=lambda results: None) -> dict:
    """Run the named scenarios; the figures (flat), `_series` for the plots, `_errors`, `_meta`.
    `after_each(results)` is called after every scenario (the CLI writes what it has so far)."""
    from bench.fleet import scenarios as sc
    from bench.fleet.deploy import deployment
    from bench.fleet.sim import raise_nofile
    nofile = raise_nofile()  # before any broker starts: it inherits the limit
    results: dict = {"_series": {}, "_errors": {}, "_plan": {k: v for k, v in vars(plan).items()}}
    fleet_needed = [n for n in names if n in ("steady", "storm", "kill", "slow")]

    def one(name: str, fn) -> None:
        t0 = time.monotonic()
        log(f"fleet: {name} …")
        try:
            figures, series = fn()
            results.update(figures)
            if series:
                results["_series"][name] = series
        except Exception as e:  # noqa: BLE001 - one scenario's failure is reported, the others still run
            results["_errors"][name] = f"{e!r}"
            log(traceback.format_exc())
        log(f"fleet: {name} took {time.monotonic() - t0:.0f} s")
        summarize(results, plan, quick, nofile)
        after_each(results)

    if fleet_needed:
        with deployment(workdir / "deployment", kind, workers) as d:
            results["deployment"] = f"{d.kind}, {d.workers} ledger worker(s), MQTT {d.mqtt_version}, " \
                                    f"{'PostgreSQL' if d.db_url.startswith('postgresql') else 'SQLite'}"
            for name in fleet_needed:
                one(name, lambda: getattr(sc, name)(d, workdir, plan))
    if "city" in names:
        one("city", lambda: sc.city(workdir, plan))
    for name in ("powercut", "workers"):
        if name not in names:
            continue
        try:
            module = __import__(f"bench.fleet.{name}", fromlist=["run"])
        except ImportError as e:
            results["_errors"][name] = f"not measured: bench/fleet/{name}.py is missing ({e})"
            continue
        one(name, lambda: (module.run(workdir / name, quick=quick), {}))
    return results


def summarize(results: dict, plan, quick: bool, nofile: int) -> None:
    """The fleet-wide keys (fleet_terminals, lost, duplicated) and `_meta`, from what has run so far."""
    ran = [results.get(f"{n}_sim_processes") and n for n in ("steady", "storm")]
    sizes = [getattr(plan, f"{n}_n") for n in ("steady", "storm") if n in ran]
    if sizes:
        results["fleet_terminals"] = max(sizes)
    # the fleet's scenarios only: the power-cut harness has its own keys (and counts losses beyond its model)
    lost = [results[f"{n}_lost"] for n in FLEET_SCENARIOS if isinstance(results.get(f"{n}_lost"), int)]
    dup = [results[f"{n}_duplicated"] for n in FLEET_SCENARIOS if isinstance(results.get(f"{n}_duplicated"), int)]
    if lost:
        results["lost"] = sum(lost)
    if dup:
        results["duplicated"] = sum(dup)
    results["_meta"] = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "nofile": nofile,
                        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                        "mode": "quick" if quick else "full"}


def main(argv: list[str] | None = None) -> int:
    from bench.fleet import report, scenarios as sc
    ap = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller fleet, shorter runs")
    ap.add_argument("--smoke", action="store_true", help="a handful of terminals (what the tests run)")
    ap.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "fleet.json")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "fleet.md", help="the report (plots beside it "
                                                                                  "in <doc dir>/fleet/)")
    ap.add_argument("--kind", choices=("mosquitto", "nats-cluster"), default="mosquitto")
    ap.add_argument("--workers", type=int, default=2, help="ledger worker processes (2, one a core, as in docs/fleet.md)")
    ap.add_argument("--terminals", type=int, help="terminals in every scenario instead of the plan's (how many fit)")
    ap.add_argument("--workdir", type=Path, help="where terminals' data go (default: a new dir in $BENCH_DIR "
                                                 "or /var/tmp — a real disk, as the outbox's fsyncs need)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    plan = sc.SMOKE if args.smoke else sc.QUICK if args.quick else sc.FULL
    if args.terminals:
        n = args.terminals
        plan = dataclasses.replace(plan, steady_n=n, storm_n=n, kill_n=n, slow_n=n)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hcp-fleet-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))

    def save(results: dict) -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        report.write(results, args.doc)

    results = run(names, plan, workdir, args.quick or args.smoke, args.kind, args.workers, after_each=save)
    save(results)
    print(f"wrote {args.out} and {args.doc}")
    for k, v in results.items():
        if not k.startswith("_"):
            print(f"  {k}: {v}")
    for k, v in results["_errors"].items():
        print(f"  ERROR {k}: {v}")
    if args.workdir is None:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if results["_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
