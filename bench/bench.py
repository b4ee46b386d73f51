#!/usr/bin/env python3
"""llm-forward benchmark: one run, one machine, alternating rounds, figures only (never pass/fail).

Variants, all in front of the same fast upstream (the gateway's Rust mock):
  a  upstream alone
  b  plain Envoy: same listener, routes and clusters, no wasm filter
  g  Envoy + a no-op wasm filter: the floor of any wasm design on V8
  f0 Envoy + llm-forward with no features configured (routing + metrics only)
  c  Envoy + llm-forward with forward keys, IP list, request limits and chat logging on
  d  c + cache hits (every request answered from the cache)
  e  streaming: a 100-chunk SSE answer through c, bytes/s and time to first byte
  o  OpenAI-Forward (`aifd run`), configured equivalently, when --openai-forward is given and it installs

Usage: bench/bench.py [--duration S] [--rounds N] [--connections C] [--concurrency K] [--openai-forward]
Needs: wrk, envoy, and release builds (./bench.sh does the builds).
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
GATEWAY = ROOT / "target/release/llm-forward"
FILTER = ROOT / "target/wasm32-wasip1/release/llm_forward_filter.wasm"
NOOP = ROOT / "target/wasm32-wasip1/release/llm_forward_noop_filter.wasm"
CHAT_BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def rss_kib(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def base_config(upstream, port, admin, concurrency, log_dir):
    return {
        "server": {"address": "127.0.0.1", "port": port, "admin_port": admin, "concurrency": concurrency},
        "log_dir": str(log_dir),
        "routes": [{"route": "/", "base_url": upstream, "type": "openai", "retries": 0}],
    }


def feature_config(cfg, cache_port=None):
    """The (c) configuration: keys + IP list + request limits + logging (+ cache for d)."""
    cfg = json.loads(json.dumps(cfg))
    cfg["keys"] = {
        "upstream": [{"key": "sk-bench-a", "levels": [0, 1]}, {"key": "sk-bench-b", "levels": [0, 1]}],
        "forward": [{"name": "bench", "key": "fk-bench", "level": 1}],
        "levels": {1: ["gpt-4o-mini", "gpt-4o*"]},
    }
    cfg["ip"] = {"allow": ["127.0.0.0/8", "::1"], "deny": ["10.0.0.0/8"]}
    cfg["limits"] = {"requests": [{"path": "/v1/chat/completions", "limit": "100000000/minute", "per": "key"}]}
    cfg["logging"] = {"chat": True}
    if cache_port is not None:
        cfg["cache"] = {"backend": "memory", "port": cache_port, "openai": True, "default_request_caching": True}
    return cfg


class Proc:
    def __init__(self, args, log, env=None, cwd=None):
        self.log = log
        self.p = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=cwd)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()


def start_envoy(tmp, name, cfg, wasm, without_filter, concurrency):
    (tmp / f"{name}.yaml").write_text(json.dumps(cfg))
    args = [str(GATEWAY), "render", "-c", str(tmp / f"{name}.yaml"), "--wasm-path", str(wasm), "--log-dir", str(tmp)]
    if without_filter:
        args.append("--without-filter")
    rendered = subprocess.run(args, capture_output=True, text=True)
    if rendered.returncode != 0:
        raise RuntimeError(f"render {name}: {rendered.stderr}")
    (tmp / f"{name}.envoy.yaml").write_text(rendered.stdout)
    envoy = shutil.which("envoy") or os.environ.get("ENVOY_BIN")
    proc = Proc(
        [envoy, "-c", str(tmp / f"{name}.envoy.yaml"), "--disable-hot-restart", "--concurrency", str(concurrency),
         "--log-level", "error"],
        tmp / f"{name}.envoy.log",
    )
    wait_http(f"http://127.0.0.1:{cfg['server']['admin_port']}/ready")
    return proc


def wrk(url, duration, connections, headers, body):
    lua = "wrk.method = 'POST'\nwrk.body = [[" + body + "]]\n"
    for k, v in headers.items():
        lua += f"wrk.headers['{k}'] = '{v}'\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", f.name, url],
        capture_output=True, text=True,
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
    bps = float(transfer.group(1)) * scale.get(transfer.group(2), 1) if transfer else 0.0

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": pct(50), "p99": pct(99), "bps": bps, "non2xx": int(errors.group(1)) if errors else 0}


def ttfb_ms(url, headers, body, n=20):
    samples = []
    for _ in range(n):
        req = urllib.request.Request(url, data=body.encode(), headers=headers)
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read(1)
            samples.append((time.perf_counter() - t) * 1000)
            r.read()
    return statistics.median(samples)


def start_openai_forward(tmp, upstream, port):
    venv = tmp / "aifd-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin/pip"), "install", "-q", "openai-forward"], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"OpenAI-Forward did not install: {r.stderr.strip()[-300:]}")
        return None
    env = dict(os.environ)
    env.update(
        FORWARD_CONFIG=json.dumps([{"base_url": upstream, "route": "/", "type": "openai"}]),
        OPENAI_API_KEY_CONFIG=json.dumps({"sk-bench-a": [0, 1], "sk-bench-b": [0, 1]}),
        FORWARD_KEY_CONFIG=json.dumps({"fk-bench": 1}),
        LEVEL_MODELS=json.dumps({"1": ["gpt-4o-mini"]}),
        REQ_RATE_LIMIT=json.dumps({"/v1/chat/completions": [{"level": 0, "limit": "100000000/minute"}]}),
        LOG_OPENAI="true",
        IP_WHITELIST="127.0.0.1",
    )
    run_dir = tmp / "aifd"
    run_dir.mkdir()
    proc = Proc([str(venv / "bin/aifd"), "run", f"--port={port}"], tmp / "aifd.log", env=env, cwd=run_dir)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
    except RuntimeError:
        print("OpenAI-Forward did not start:\n" + (tmp / "aifd.log").read_text()[-1000:])
        proc.stop()
        return None
    return proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=1, help="Envoy worker threads")
    ap.add_argument("--openai-forward", action="store_true", help="also measure OpenAI-Forward (pip install)")
    ap.add_argument("--only", default="", help="comma list of variants to run (default all)")
    args = ap.parse_args()
    for p in (GATEWAY, FILTER, NOOP):
        if not p.exists():
            sys.exit(f"{p} missing: run ./bench.sh (it builds everything)")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="llm-forward-bench-"))
    procs = []
    try:
        up_port = free_port()
        procs.append(Proc([str(GATEWAY), "mock", "--listen", f"127.0.0.1:{up_port}"], tmp / "mock.log"))
        upstream = f"http://127.0.0.1:{up_port}"
        wait_http(upstream + "/v1/models")
        variants = {}  # name -> (url, headers, process for RSS)
        variants["a"] = (upstream, {}, procs[0])

        def envoy_variant(name, cfg, wasm, without_filter=False):
            proc = start_envoy(tmp, name, cfg, wasm, without_filter, args.concurrency)
            procs.append(proc)
            return f"http://127.0.0.1:{cfg['server']['port']}", proc

        def cfg():
            return base_config(upstream, free_port(), free_port(), args.concurrency, tmp)

        url, p = envoy_variant("b", cfg(), FILTER, without_filter=True)
        variants["b"] = (url, {}, p)
        url, p = envoy_variant("g", cfg(), NOOP)
        variants["g"] = (url, {}, p)
        url, p = envoy_variant("f0", cfg(), FILTER)
        variants["f0"] = (url, {}, p)
        auth = {"Authorization": "Bearer fk-bench"}
        try:
            url, p = envoy_variant("c", feature_config(cfg()), FILTER)
            variants["c"] = (url, auth, p)
        except RuntimeError as e:
            print(f"variant c unavailable: {e}")
        try:
            cache_cfg = feature_config(cfg(), cache_port=free_port())
            # `llm-forward run` would start the cache service; here we start it the same way.
            cache = Proc([str(GATEWAY), "cache", "--listen", f"127.0.0.1:{cache_cfg['cache']['port']}"], tmp / "cache.log")
            procs.append(cache)
            wait_http(f"http://127.0.0.1:{cache_cfg['cache']['port']}/healthz")
            url, p = envoy_variant("d", cache_cfg, FILTER)
            variants["d"] = (url, {**auth, "content-type": "application/json"}, p)
            # Warm the entry so every measured request is a hit.
            req = urllib.request.Request(url + "/v1/chat/completions", data=CHAT_BODY.encode(), headers=variants["d"][1])
            urllib.request.urlopen(req).read()
            time.sleep(0.5)
        except (RuntimeError, OSError) as e:
            print(f"variant d unavailable: {e}")
        if args.openai_forward:
            port = free_port()
            p = start_openai_forward(tmp, upstream, port)
            if p:
                procs.append(p)
                variants["o"] = (f"http://127.0.0.1:{port}", auth, p)
        only = set(filter(None, args.only.split(",")))
        names = [n for n in variants if not only or n in only]

        results = {n: [] for n in names}
        for rnd in range(args.rounds):
            for n in names:
                url, headers, _ = variants[n]
                h = {"content-type": "application/json", **headers}
                results[n].append(wrk(url + "/v1/chat/completions", args.duration, args.connections, h, CHAT_BODY))
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)

        stream = {}
        if "c" in variants:
            url, headers, _ = variants["c"]
            h = {"content-type": "application/json", "x-mock-chunks": "100", **headers}
            body = json.dumps({**json.loads(CHAT_BODY), "stream": True})
            for n in ("b", "c"):
                u = variants[n][0]
                hh = h if n == "c" else {"content-type": "application/json", "x-mock-chunks": "100"}
                stream[n] = wrk(u + "/v1/chat/completions", args.duration, 8, hh, body)
                stream[n]["ttfb"] = ttfb_ms(u + "/v1/chat/completions", hh, body)

        label = {
            "a": "a upstream alone", "b": "b plain Envoy", "g": "g no-op wasm filter",
            "f0": "   llm-forward, no features", "c": "c keys+IP+limits+logs", "d": "d c + cache hits",
            "o": "o OpenAI-Forward",
        }
        med = {n: statistics.median(r["rps"] for r in results[n]) for n in names}
        print(f"\nEnvoy --concurrency {args.concurrency}, wrk -t1 -c{args.connections}, {args.rounds} rounds x {args.duration}s, "
              f"non-streaming chat completions (median of rounds)\n")
        print(f"{'variant':32} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'vs b':>6} {'RSS MiB':>8}")
        for n in names:
            rs = results[n]
            p50 = statistics.median(r["p50"] for r in rs)
            p99 = statistics.median(r["p99"] for r in rs)
            bad = sum(r["non2xx"] for r in rs)
            ratio = med[n] / med["b"] if "b" in med else float("nan")
            rss = rss_kib(variants[n][2].p.pid) / 1024
            print(f"{label[n]:32} {med[n]:>10.0f} {p50:>8.2f} {p99:>8.2f} {bad:>8} {ratio:>6.2f} {rss:>8.1f}")
        if stream:
            print("\nstreaming, 100-chunk SSE (wrk -c8):")
            for n, s in stream.items():
                print(f"  {label[n]:30} {s['rps']:>8.0f} streams/s  {s['bps'] / 1e6:>7.1f} MB/s  TTFB {s['ttfb']:.2f} ms")
        print()
        for a, b in (("c", "b"), ("d", "b"), ("g", "b"), ("f0", "b"), ("c", "o")):
            if a in med and b in med:
                print(f"ratio {a}/{b} = {med[a] / med[b]:.2f}")
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
