#!/usr/bin/env python3
"""Soak bench (not a test): SECONDS (default 600) of mixed load on one
server at about 80% of the click capacity measured first, then the figures
that say whether it held.

    bench/soak.py [SECONDS]          # BIN=path to run a given build

Load: wrk sends clicks (bench/vary.lua's visitors, each connection paced
by wrk's `delay`, so the rate is set rather than "as fast as possible"); a
second client takes clicks and reports a conversion for each (about 20 a
second); a third changes an offer's payout through the admin API every
second. Reported: the capacity measured, the clicks/s reached, wrk's p99,
errors on every client, RSS at start and end, and the reconciliation of the
report with what was sent (clicks and conversions, once the store caught
up). Needs wrk (installed with apt when missing).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 18190
BASE = f"http://127.0.0.1:{PORT}"
TOKEN = "soak-admin-token"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def request(method, path, body=None, headers=None):
    req = urllib.request.Request(BASE + path, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def admin(method, path, body=None):
    h = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return request(method, path, json.dumps(body).encode() if body is not None else None, h)


def metric(name):
    _, _, text = request("GET", "/metrics")
    for line in text.decode().splitlines():
        if line.split(" ")[0] == name:
            return float(line.split(" ")[1])
    return 0.0


def served():
    return sum(metric(f'smartlink_clicks_total{{outcome="{o}"}}') for o in ("offer", "fallback"))


def wait_caught_up():
    deadline = time.time() + 300
    while time.time() < deadline and (metric("smartlink_clicks_written_total") != metric("smartlink_clicks_journaled_total")
                                      or metric("smartlink_click_queue_depth") != 0):
        time.sleep(0.5)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wrk(seconds, connections, script):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, f"{BASE}/s/pool"],
        capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return total, rps, p99, errors


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    if not shutil.which("wrk"):
        subprocess.run("apt-get update -qq && apt-get install -y -qq wrk >/dev/null", shell=True, check=True)
    binary = os.environ.get("BIN")
    if not binary:
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target/release/smartlink")
    work = tempfile.mkdtemp(prefix="soak-")
    with open(os.path.join(ROOT, "bench/pool50.yaml")) as f:
        pool = f.read().replace("advertisers: [{id: adv}]", "advertisers: [{id: adv, postback_token: soak-pb}]")
    cfg = os.path.join(work, "soak.yaml")
    with open(cfg, "w") as f:
        f.write("server:\n  trust_proxy: true\n  admin_token: %s\n  quality: {capacity_ips: 5000000}\n%s"
                % (TOKEN, pool))

    def start(data):
        server = subprocess.Popen(
            [binary, "serve", "--config", cfg, "--data-dir", os.path.join(work, data), "--listen", f"127.0.0.1:{PORT}"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(work, f"{data}.log"), "w"),
            env={**os.environ, "RUST_LOG": "warn"})
        assert "listening" in server.stdout.readline().decode()
        return server

    try:
        # Capacity and pacing on one server, the soak on a fresh one (so the
        # report holds only the soak's traffic).
        server = start("calibrate")
        try:
            calibration = calibrate(work)
        finally:
            server.terminate()
            server.wait(timeout=60)
        server = start("soak")
        try:
            run(server, seconds, calibration)
        finally:
            server.terminate()
            server.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def calibrate(work):
    vary = os.path.join(ROOT, "bench/vary.lua")
    capacity = wrk(10, 64, vary)[1]
    delay_ms = 2
    paced = os.path.join(work, "paced.lua")
    with open(vary) as f, open(paced, "w") as g:
        g.write(f.read() + f"\ndelay = function() return {delay_ms} end\n")
    # The connection count for 80% of capacity: a guess from the delay
    # alone, corrected twice by short paced runs (answers take time too).
    connections = max(2, round(0.8 * capacity * delay_ms / 1000))
    for _ in range(2):
        reached = wrk(5, connections, paced)[1]
        connections = max(2, min(2000, round(connections * 0.8 * capacity / max(reached, 1.0))))
    return capacity, delay_ms, paced, connections


def run(server, seconds, calibration):
    capacity, delay_ms, paced, connections = calibration
    served0 = served()
    rss_start = rss_kib(server.pid)
    stop = threading.Event()
    stats = {"pb_clicks": 0, "recorded": 0, "pb_errors": 0, "admin_ok": 0, "admin_errors": 0, "rss_max": rss_start}

    def postbacks():
        i = 0
        while not stop.is_set():
            i += 1
            status, headers, _ = request("GET", f"/s/pool?sub1=pb{i}", headers={
                "User-Agent": IPHONE, "X-Forwarded-For": f"81.2.{i // 250 % 250}.{1 + i % 250}", "Accept": "*/*",
                "Accept-Language": "en"})
            stats["pb_clicks"] += 1
            loc = headers.get("Location", "") if status == 302 else ""
            m = re.search(r"cid=([A-Za-z0-9_-]{48})", loc)
            if not m:
                stats["pb_errors"] += 1
                continue
            status, _, body = request("GET", f"/postback?click_id={m.group(1)}&token=soak-pb&txid=T{i}")
            if status == 200 and json.loads(body).get("result") == "recorded":
                stats["recorded"] += 1
            else:
                stats["pb_errors"] += 1
            time.sleep(0.05)

    def changes():
        i = 0
        while not stop.is_set():
            i += 1
            status, _, _ = admin("PATCH", "/api/v1/offers/o3", {"payout": 2.4 + (i % 2) / 10})
            stats["admin_ok" if status == 200 else "admin_errors"] += 1
            stats["rss_max"] = max(stats["rss_max"], rss_kib(server.pid))
            time.sleep(1)

    threads = [threading.Thread(target=postbacks), threading.Thread(target=changes)]
    for t in threads:
        t.start()
    total, rps, p99, errors = wrk(seconds, connections, paced)
    stop.set()
    for t in threads:
        t.join()
    rss_end = rss_kib(server.pid)
    # Reconcile once everything journaled is in the store.
    wait_caught_up()
    served_now = served() - served0
    _, _, body = admin("GET", "/api/v1/report?from=1d&include_bots=true")
    totals = json.loads(body)["totals"]
    dropped = metric("smartlink_clicks_dropped_total")
    sent = total + stats["pb_clicks"]
    print(f"capacity measured: {capacity:.0f} clicks/s; soak: {seconds} s, {connections} connections paced at "
          f"{delay_ms} ms -> {rps:.0f} clicks/s ({rps / capacity:.0%} of capacity), wrk p99 {p99}")
    print(f"errors: wrk {errors}, conversion client {stats['pb_errors']}, admin {stats['admin_errors']} "
          f"(of {stats['admin_ok'] + stats['admin_errors']} changes)")
    print(f"RSS: start {rss_start / 1024:.1f} MiB, end {rss_end / 1024:.1f} MiB, max {stats['rss_max'] / 1024:.1f} MiB")
    print(f"clicks: answered to the clients {sent}, served by the server {served_now:.0f} (the difference: answers "
          f"in flight when wrk stopped), dropped {dropped:.0f}, in the report {totals['clicks']}")
    print(f"conversions: recorded {stats['recorded']}, report {totals['conversions']}")
    ok = (errors == 0 and stats["pb_errors"] == 0 and stats["admin_errors"] == 0 and dropped == 0
          and totals["clicks"] == served_now and sent <= served_now <= sent + connections
          and totals["conversions"] == stats["recorded"])
    print("reconciled: " + ("yes" if ok else "NO"))


if __name__ == "__main__":
    main()
