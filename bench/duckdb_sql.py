#!/usr/bin/env python3
"""The report_load breakdowns as hand-written SQL, run by the official DuckDB
build (the `duckdb` package from PyPI, the engine of the DuckDB CLI) on a
copy of the analytics file report_load left behind: what a DuckDB user
would get writing the query themselves, beside what smartlink's own path
(query building, two statements, dictionary decoding, the report layer)
takes on the same data. docs/benchmarks.md has the table.

    pip install duckdb==2.0.0
    python3 bench/duckdb_sql.py DIR NOW_MS WINDOW_FROM_MS [DAYS]

DIR is report_load's directory (its `analytics.duckdb` is copied first, so
a running loader is not disturbed); NOW_MS and WINDOW_FROM_MS are printed
by report_load. Each query: median of 5 after one warm-up run.
"""
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

HOUR, DAY = 3_600_000, 86_400_000


def main():
    src, now = Path(sys.argv[1]), int(sys.argv[2])
    window_from = int(sys.argv[3])
    days = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    tmp = Path(tempfile.mkdtemp())
    db = tmp / "analytics.duckdb"
    shutil.copy(src / "analytics.duckdb", db)
    wal = src / "analytics.duckdb.wal"
    if wal.exists():
        shutil.copy(wal, tmp / "analytics.duckdb.wal")
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET threads TO 2")
    code = lambda v: con.execute("SELECT code FROM dict WHERE value = ?", [v]).fetchone()[0]
    humans = f"{code('human')}, {code('suspect')}"
    sl1 = con.execute("SELECT min(smartlink) FROM clicks WHERE smartlink > 0").fetchone()[0]
    period = (now - days * DAY, now)

    def dims(group, ts):
        out = []
        for g in group:
            out.append(
                {
                    "day": f"({ts} // {DAY}) * {DAY} AS day",
                    "hour_of_day": f"({ts} // {HOUR}) % 24 AS hour_of_day",
                    "weekday": f"dayofweek(epoch_ms({ts})) AS weekday",
                }.get(g, g)
            )
        return ", ".join(out)

    def sql(group, where="", order=None, limit=None, window=period):
        raw = any(g.startswith("sub") or g in ("source", "reason") for g in group)
        names = ", ".join(group)

        def facts(table, ts):
            w = f"{ts} >= {window[0]} AND {ts} < {window[1]} AND quality IN ({humans}){where}"
            if table == "conversions" and raw:
                w += " AND click_rid IS NOT NULL"
            if "reason" in group:
                return f"(SELECT *, unnest(string_split(reasons, ',')) AS reason FROM {table} WHERE {w})"
            return f"{table} WHERE {w}"

        k = (
            f"SELECT {dims(group, 'ts_ms')}, count(*) AS clicks, count(*) FILTER (WHERE offer = 0) AS fallback,"
            f" sum(cost) AS click_cost FROM {facts('clicks', 'ts_ms')} GROUP BY ALL"
        )
        v = (
            f"SELECT {dims(group, 'click_ts_ms')}, count(*) FILTER (WHERE status = 1) AS approved,"
            " count(*) FILTER (WHERE status = 0) AS pending, count(*) FILTER (WHERE status = 2) AS rejected,"
            " count(*) FILTER (WHERE status = 3) AS chargebacks,"
            " sum(payout) FILTER (WHERE status = 1) AS revenue, sum(cost) FILTER (WHERE status = 1) AS cpa_cost"
            f" FROM {facts('conversions', 'click_ts_ms')} GROUP BY ALL"
        )
        q = f"WITH k AS ({k}), v AS ({v}) SELECT * FROM k FULL JOIN v USING ({names})"
        if order:
            q += f" ORDER BY {order} DESC NULLS LAST LIMIT {limit}"
        return q

    cases = [
        ("offer", sql(["offer"])),
        ("country", sql(["country"])),
        ("smartlink x offer", sql(["smartlink", "offer"])),
        ("day x offer (UTC)", sql(["day", "offer"])),
        ("country x device, one smartlink", sql(["country", "device"], where=f" AND smartlink = {sl1}")),
        ("os x browser", sql(["os", "browser"])),
        ("top-50 sub1 by clicks", sql(["sub1"], order="clicks", limit=50)),
        ("hour of day x offer", sql(["hour_of_day", "offer"])),
        ("country x device x os x browser", sql(["country", "device", "os", "browser"])),
        ("weekday x language", sql(["weekday", "language"])),
        ("top-50 sub1 x offer by revenue", sql(["sub1", "offer"], order="revenue", limit=50)),
        ("29.5-min window by sub1", sql(["sub1"], window=(window_from, window_from + 1_770_500))),
        ("quality reason", sql(["reason"])),
        ("source x day", sql(["source", "day"])),
    ]
    print(f"DuckDB {duckdb.__version__} (PyPI), threads 2")
    print(f"{'breakdown (median of 5)':<34} {'SQL ms':>8} {'rows':>6}")
    for name, q in cases:
        rows = len(con.execute(q).fetchall())
        times = []
        for _ in range(5):
            t = time.perf_counter()
            con.execute(q).fetchall()
            times.append((time.perf_counter() - t) * 1000)
        print(f"{name:<34} {statistics.median(times):>8.1f} {rows:>6}")
    con.close()
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
