#!/usr/bin/env python3
"""llm-forward soak: N minutes of mixed traffic at ~80% of a measured capacity, sampling memory.

Starts the mock upstream (`llm-forward mock`) and `llm-forward run` with every feature on (forward
keys, IP list, request limits, token quotas, cache with its in-process service, chat logs), measures
the capacity of this client + gateway pair with a short closed-loop burst, then sends open-loop mixed
traffic at --load (default 0.8) of it:

  35% chat (a fresh body each: cache miss + store)   20% streamed chat (10 chunks)
  20% cache hits (one fixed body)                     10% a rate-limited key (429 after 5/minute)
   5% embeddings                                      10% errors (unknown key 401, upstream 500)

Every 10 s it prints a row: requests, rate, status mix, p50/p99 latency, Envoy's RSS and the
llm-forward process's RSS. Shared data (limits buckets, rotation counters, cooldowns) cannot be listed
through Envoy (no API); its size is fixed by construction: the number of limit subjects (forward
keys x rules x rates, printed at start) does not grow with traffic, so Envoy's RSS is the witness.

Not run in CI. Usage: bench/soak.py [--minutes 5] [--load 0.8] [--workers 16] [--concurrency 2]
Needs release builds: cargo build --release -p llm-forward && cargo build -p llm-forward-filter
--target wasm32-wasip1 --release
"""
import argparse
import http.client
import json
import os
import pathlib
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
GATEWAY = ROOT / "target/release/llm-forward"
FILTER = ROOT / "target/wasm32-wasip1/release/llm_forward_filter.wasm"
KEYS = [f"fk-soak-{i:02d}" for i in range(20)]
LIMITED_KEY = "fk-soak-limited"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def children(pid):
    try:
        out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [(int(p), c) for p, c in (l.split(None, 1) for l in out.strip().splitlines() if l.strip())]


def config_yaml(port, admin, cache_port, upstream, log_dir, concurrency, cache_max_bytes):
    forward = "\n".join(f"    - {{name: soak-{i:02d}, key: {k}, level: 0}}" for i, k in enumerate(KEYS))
    return f"""
server: {{address: 127.0.0.1, port: {port}, concurrency: {concurrency}}}
log_dir: {log_dir}
routes:
  - {{route: /, base_url: "{upstream}", type: openai}}
keys:
  upstream: [{{key: sk-soak-upstream, levels: [0, 1]}}]
  forward:
{forward}
    - {{name: limited, key: {LIMITED_KEY}, level: 1}}
  levels:
    1: [gpt-4o-mini]
ip: {{allow: [127.0.0.0/8]}}
logging: {{chat: true, rotate_bytes: 10000000}}
cache:
  backend: memory
  max_bytes: {cache_max_bytes}
  port: {cache_port}
  openai: true
  routes: [/v1/chat/completions, /v1/embeddings]
  default_request_caching: false
  timeout_ms: 500
limits:
  requests:
    - {{path: /v1/chat/completions, limit: "5/minute", per: key, level: 1}}
    - {{path: /v1/chat/completions, limit: "100000/minute;1000000/hour", per: key}}
  global: "1000000/minute"
  tokens:
    - {{path: /v1/chat/completions, limit: "1000000000/day", per: key}}
"""


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = []
        self.status = {}
        self.failed = 0

    def add(self, status, seconds):
        with self.lock:
            self.lat.append(seconds)
            self.status[status] = self.status.get(status, 0) + 1

    def take(self):
        with self.lock:
            lat, status = self.lat, self.status
            self.lat, self.status = [], {}
        return lat, status


def one_request(conn, rng, seq):
    """Sends one request of the mix on `conn`; returns the status."""
    r = rng.random()
    headers = {"content-type": "application/json", "authorization": f"Bearer {rng.choice(KEYS)}"}
    path = "/v1/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"soak {seq}"}]}
    if r < 0.35:
        body["caching"] = True
    elif r < 0.55:
        body["stream"] = True
        headers["x-mock-chunks"] = "10"
    elif r < 0.75:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "the cached one"}], "caching": True}
    elif r < 0.85:
        headers["authorization"] = f"Bearer {LIMITED_KEY}"
    elif r < 0.90:
        path = "/v1/embeddings"
        body = {"model": "text-embedding-3-small", "input": f"soak {seq}", "caching": True}
    elif r < 0.95:
        headers["authorization"] = "Bearer fk-unknown"
    else:
        headers["x-mock-status"] = "500"
    conn.request("POST", path, body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def worker(port, stats, stop, interval, seed):
    """Sends requests until `stop`; `interval()` gives the pause between them (open loop)."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seq = seed * 10_000_000
    next_at = time.monotonic()
    while not stop.is_set():
        seq += 1
        start = time.monotonic()
        try:
            status = one_request(conn, rng, seq)
        except Exception:
            status = "error"
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        stats.add(status, time.monotonic() - start)
        pause = interval()
        if pause:
            next_at += pause
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
    conn.close()


def run_load(port, workers, seconds, rate=None, on_tick=None, tick=10.0):
    stats = Stats()
    stop = threading.Event()
    per_worker = (workers / rate) if rate else 0.0
    threads = [
        threading.Thread(target=worker, args=(port, stats, stop, (lambda: per_worker), i + 1), daemon=True)
        for i in range(workers)
    ]
    for t in threads:
        t.start()
    start = time.monotonic()
    next_tick = start + tick
    total = 0
    while time.monotonic() - start < seconds:
        time.sleep(min(0.2, max(0.0, next_tick - time.monotonic())))
        if time.monotonic() >= next_tick:
            lat, status = stats.take()
            total += len(lat)
            if on_tick:
                on_tick(time.monotonic() - start, lat, status, tick)
            next_tick += tick
    stop.set()
    for t in threads:
        t.join(timeout=35)
    lat, status = stats.take()
    total += len(lat)
    return total / (time.monotonic() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--load", type=float, default=0.8, help="fraction of the measured capacity")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=2, help="Envoy worker threads")
    ap.add_argument("--capacity-seconds", type=float, default=15.0)
    ap.add_argument("--cache-max-bytes", type=int, default=268435456, help="memory cache bound (default 256 MiB)")
    args = ap.parse_args()
    for f in (GATEWAY, FILTER):
        if not f.is_file():
            sys.exit(f"{f} is missing (see the usage in this script's docstring)")

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="llmf-soak-"))
    up_port, port, admin, cache_port = free_port(), free_port(), free_port(), free_port()
    procs = []
    try:
        mock = subprocess.Popen([str(GATEWAY), "mock", "--listen", f"127.0.0.1:{up_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(mock)
        cfg = tmp / "llm-forward.yaml"
        cfg.write_text(config_yaml(port, admin, cache_port, f"http://127.0.0.1:{up_port}", tmp / "Log", args.concurrency,
                                   args.cache_max_bytes))
        run_log = open(tmp / "run.log", "w")
        run = subprocess.Popen([str(GATEWAY), "run", "-v", "--config", str(cfg), "--wasm", str(FILTER)],
                               stdout=run_log, stderr=subprocess.STDOUT, cwd=tmp)
        procs.append(run)
        deadline = time.time() + 60
        while True:
            # Envoy's admin is run's private Unix socket: the banner says when it is ready.
            if "ready to serve" in (tmp / "run.log").read_text(errors="replace"):
                break
            if time.time() > deadline or run.poll() is not None:
                sys.exit(f"gateway did not start:\n{(tmp / 'run.log').read_text()}")
            time.sleep(0.2)
        envoy = next((p for p, c in children(run.pid) if "envoy" in c), None)
        if envoy is None:
            sys.exit(f"no envoy child of llm-forward run ({children(run.pid)})")
        subjects = len(KEYS) + 1
        print(f"gateway up: Envoy pid {envoy} (--concurrency {args.concurrency}), llm-forward pid {run.pid}")
        print(f"limit subjects: {subjects} forward keys x (1 request rule with 2 rates + 1 token rule + "
              f"the level-1 rule) -> at most {subjects * 4} limit buckets in shared data, fixed")

        print(f"measuring capacity: {args.workers} closed-loop workers for {args.capacity_seconds:.0f}s ...")
        capacity = run_load(port, args.workers, args.capacity_seconds)
        target = capacity * args.load
        print(f"capacity {capacity:.0f} req/s; soak at {target:.0f} req/s for {args.minutes:g} min\n")

        rows = []
        header = f"{'t(s)':>6} {'req':>7} {'req/s':>7} {'2xx':>6} {'401':>5} {'429':>5} {'5xx':>5} {'err':>4} " \
                 f"{'p50ms':>7} {'p99ms':>7} {'envoyMiB':>9} {'gwMiB':>7}"
        print(header)

        def on_tick(t, lat, status, tick):
            lat = sorted(lat)
            pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
            count = lambda pred: sum(v for k, v in status.items() if pred(k))
            row = (t, len(lat), len(lat) / tick,
                   count(lambda k: isinstance(k, int) and 200 <= k < 300), status.get(401, 0), status.get(429, 0),
                   count(lambda k: isinstance(k, int) and k >= 500), status.get("error", 0),
                   pct(0.5), pct(0.99), rss_mib(envoy), rss_mib(run.pid))
            rows.append(row)
            print(f"{row[0]:6.0f} {row[1]:7d} {row[2]:7.0f} {row[3]:6d} {row[4]:5d} {row[5]:5d} {row[6]:5d} {row[7]:4d} "
                  f"{row[8]:7.1f} {row[9]:7.1f} {row[10]:9.1f} {row[11]:7.1f}", flush=True)

        start_rss = rss_mib(envoy)
        achieved = run_load(port, args.workers, args.minutes * 60, rate=target, on_tick=on_tick)
        end_rss = rss_mib(envoy)
        errors = sum(r[7] for r in rows)
        first = rows[min(2, len(rows) - 1)][10] if rows else start_rss
        print(f"\nachieved {achieved:.0f} req/s ({achieved / capacity:.0%} of capacity); client errors {errors}")
        print(f"Envoy RSS: start {start_rss:.1f} MiB, after warm-up (30 s) {first:.1f} MiB, end {end_rss:.1f} MiB, "
              f"growth after warm-up {end_rss - first:+.1f} MiB")
        print(f"llm-forward (cache service) RSS end {rss_mib(run.pid):.1f} MiB")
        out = (tmp / "run.log").read_text()
        bad = [l for l in out.splitlines() if "panicked" in l or "Function: proxy_on" in l]
        print("wasm VM failures in Envoy's log:", len(bad))
        for l in bad[:5]:
            print("  ", l)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
