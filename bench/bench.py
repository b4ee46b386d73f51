#!/usr/bin/env python3
"""llm-forward benchmark: one run, one machine, alternating rounds, figures only (never pass/fail).

Variants, all in front of the same fast upstream (the gateway's Rust mock):
  a  upstream alone
  b  plain Envoy: same listener, routes and clusters, no wasm filter
  g  Envoy + a no-op wasm filter: the floor of any wasm design on V8
  f0 Envoy + llm-forward with no features configured (routing + metrics only)
  c  Envoy + llm-forward with forward keys, IP list, request limits and chat logging on
     (the key's level restricts models, so the body is held and parsed; c0, only with --only:
     the same with a level-0 key, no model check, nothing held)
  d  c + cache hits (every request answered from the cache)
  l  c with fleet-wide limits: the same rules counted by the built-in rate-limit service
     (`llm-forward ratelimit`) in a local redis-server, one gRPC call per request (compare with c)
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


def feature_config(cfg, cache_port=None, level=1):
    """The (c) configuration: keys + IP list + request limits + logging (+ cache for d). With
    `level=0` (variant c0) the forward key may use every model, so no request body is held."""
    cfg = json.loads(json.dumps(cfg))
    cfg["keys"] = {
        "upstream": [{"key": "sk-bench-a", "levels": [0, 1]}, {"key": "sk-bench-b", "levels": [0, 1]}],
        "forward": [{"name": "bench", "key": "fk-bench", "level": level}],
        "levels": {1: ["gpt-4o-mini", "gpt-4o*"]},
    }
    cfg["ip"] = {"allow": ["127.0.0.0/8", "::1"], "deny": ["10.0.0.0/8"]}
    cfg["limits"] = {"requests": [{"path": "/v1/chat/completions", "limit": "100000000/minute", "per": "key"}]}
    cfg["logging"] = {"chat": True}
    if cache_port is not None:
        cfg["cache"] = {"backend": "memory", "port": cache_port, "openai": True, "default_request_caching": True}
    return cfg


def _with(cfg, **sections):
    cfg = json.loads(json.dumps(cfg))
    cfg.update(sections)
    return cfg


EXTRA = {
    "f0m": lambda cfg: _with(cfg, logging={"metrics": False}),
    "f0k": lambda cfg: _with(cfg, cache={"openai": False}),
    "f0x": lambda cfg: _with(cfg, cache={"openai": False}, logging={"metrics": False}),
    "cm": lambda cfg: _with(feature_config(cfg), logging={"chat": False, "metrics": True}),
    "cn": lambda cfg: _with(feature_config(cfg), logging={"chat": False, "metrics": False}),
    "cnoip": lambda cfg: {k: v for k, v in feature_config(cfg).items() if k != "ip"},
    "cnolim": lambda cfg: {k: v for k, v in feature_config(cfg).items() if k != "limits"},
}


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
    # Envoy opens the chat-log files at start and does not create folders (`llm-forward run` does).
    for log in re.findall(r"path:\s*'?([^'\s]+/chat\.log)", rendered.stdout):
        pathlib.Path(log).parent.mkdir(parents=True, exist_ok=True)
    envoy = shutil.which("envoy") or os.environ.get("ENVOY_BIN")
    proc = Proc(
        [envoy, "-c", str(tmp / f"{name}.envoy.yaml"), "--disable-hot-restart", "--concurrency", str(concurrency),
         "--log-level", "error"],
        tmp / f"{name}.envoy.log",
    )
    wait_http(f"http://127.0.0.1:{cfg['server']['admin_port']}/ready")
    return proc


def cpu_seconds(pid):
    """User + system CPU time of a process (Envoy's CPU per request is steadier than req/s on a busy box)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def wrk(url, duration, connections, headers, body, pid=None):
    cpu0 = cpu_seconds(pid) if pid else float("nan")
    lua = "wrk.method = 'POST'\nwrk.body = [[" + body + "]]\n"
    for k, v in headers.items():
        lua += f"wrk.headers['{k}'] = '{v}'\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", f.name, url],
        capture_output=True, text=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu0 if pid else float("nan")
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = re.search(r"(\d+) requests in", out)
    cpu_us = cpu / int(total.group(1)) * 1e6 if total and int(total.group(1)) else float("nan")
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
    bps = float(transfer.group(1)) * scale.get(transfer.group(2), 1) if transfer else 0.0

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": pct(50), "p99": pct(99), "bps": bps, "non2xx": int(errors.group(1)) if errors else 0,
            "cpu_us": cpu_us}


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
    # openai-forward imports `yaml` without declaring PyYAML as a dependency.
    r = subprocess.run([str(venv / "bin/pip"), "install", "-q", "openai-forward", "pyyaml"], capture_output=True, text=True)
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
    ap.add_argument("--stat", choices=["best", "median"], default="best",
                    help="how rounds are summarised: best (highest req/s, lowest CPU; other tenants of a shared "
                         "machine only ever slow a round down) or median")
    ap.add_argument("--only", default="",
                    help="comma list of variants to run (default all); extra ones: " + ",".join(EXTRA))
    ap.add_argument("--baseline-wasm", default="",
                    help="another build of the filter: adds f0@base, c@base, c0@base, d@base (name them in --only) for A/B")
    ap.add_argument("--wasm", default="", help="the llm-forward filter build to measure (default: the release build)")
    args = ap.parse_args()
    global FILTER
    if args.wasm:
        FILTER = pathlib.Path(args.wasm)
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

        only = set(filter(None, args.only.split(",")))

        def want(n):
            named_only = n in EXTRA or n.endswith("@base") or n == "c0"
            return n in only if named_only else (not only or n in only)

        auth = {"Authorization": "Bearer fk-bench"}
        if want("b") or not only:
            url, p = envoy_variant("b", cfg(), FILTER, without_filter=True)
            variants["b"] = (url, {}, p)
        if want("g"):
            url, p = envoy_variant("g", cfg(), NOOP)
            variants["g"] = (url, {}, p)
        cache_ports = {}
        builds = [("", FILTER)] + ([("@base", pathlib.Path(args.baseline_wasm))] if args.baseline_wasm else [])
        for suffix, wasm in builds:
            if want("f0" + suffix):
                url, p = envoy_variant("f0" + suffix, cfg(), wasm)
                variants["f0" + suffix] = (url, {}, p)
            if want("c" + suffix):
                try:
                    url, p = envoy_variant("c" + suffix, feature_config(cfg()), wasm)
                    variants["c" + suffix] = (url, auth, p)
                except RuntimeError as e:
                    print(f"variant c{suffix} unavailable: {e}")
            if want("c0" + suffix):
                url, p = envoy_variant("c0" + suffix, feature_config(cfg(), level=0), wasm)
                variants["c0" + suffix] = (url, auth, p)
            if want("d" + suffix):
                try:
                    cache_cfg = feature_config(cfg(), cache_port=free_port())
                    # `llm-forward run` would start the cache service; here we start it the same way.
                    cache = Proc([str(GATEWAY), "cache", "--listen", f"127.0.0.1:{cache_cfg['cache']['port']}"],
                                 tmp / f"cache{suffix}.log")
                    procs.append(cache)
                    wait_http(f"http://127.0.0.1:{cache_cfg['cache']['port']}/healthz")
                    cache_ports["d" + suffix] = cache_cfg["cache"]["port"]
                    url, p = envoy_variant("d" + suffix, cache_cfg, wasm)
                    variants["d" + suffix] = (url, {**auth, "content-type": "application/json"}, p)
                    # Warm the entry so every measured request is a hit.
                    req = urllib.request.Request(url + "/v1/chat/completions", data=CHAT_BODY.encode(),
                                                 headers=variants["d" + suffix][1])
                    urllib.request.urlopen(req).read()
                    time.sleep(0.5)
                    with urllib.request.urlopen(req) as r:
                        r.read()
                        if r.headers.get("x-cache") != "HIT":
                            raise RuntimeError(f"warm-up request was not a cache hit (x-cache: {r.headers.get('x-cache')})")
                except (RuntimeError, OSError) as e:
                    print(f"variant d{suffix} unavailable: {e}")
        if want("l"):
            try:
                redis_port, rls_port = free_port(), free_port()
                redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], tmp / "redis.log")
                procs.append(redis)
                rls = Proc([str(GATEWAY), "ratelimit", "--listen", f"127.0.0.1:{rls_port}",
                            "--redis", f"redis://127.0.0.1:{redis_port}"], tmp / "ratelimit.log")
                procs.append(rls)
                deadline = time.time() + 10
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", rls_port), 0.2).close()
                        break
                    except OSError:
                        if time.time() > deadline:
                            raise RuntimeError("llm-forward ratelimit did not listen")
                        time.sleep(0.05)
                fleet_cfg = feature_config(cfg())
                # The built-in service, addressed as `limits.service` so `render` points the cluster
                # at this port (`run` does the same with `limits.backend` and a port it picks).
                fleet_cfg["limits"]["service"] = f"grpc://127.0.0.1:{rls_port}"
                url, p = envoy_variant("l", fleet_cfg, FILTER)
                variants["l"] = (url, auth, p)
                fleet_admin = fleet_cfg["server"]["admin_port"]
            except (RuntimeError, OSError) as e:
                print(f"variant l unavailable: {e}")
        # Optional variants measuring defaults (only with --only): f0 with logging.metrics off, with
        # cache.openai off (on by default: every chat body is held to look for `caching`), both off;
        # c without chat logs.
        for n, make in EXTRA.items():
            if want(n):
                url, p = envoy_variant(n, make(cfg()), FILTER)
                variants[n] = (url, auth if n.startswith("c") else {}, p)
        if args.openai_forward:
            port = free_port()
            p = start_openai_forward(tmp, upstream, port)
            if p:
                procs.append(p)
                variants["o"] = (f"http://127.0.0.1:{port}", auth, p)
        names = [n for n in variants if want(n)]

        results = {n: [] for n in names}
        for rnd in range(args.rounds):
            for n in names:
                url, headers, proc = variants[n]
                h = {"content-type": "application/json", **headers}
                results[n].append(wrk(url + "/v1/chat/completions", args.duration, args.connections, h, CHAT_BODY,
                                      proc.p.pid))
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)

        stream = {}
        if want("e"):
            body = json.dumps({**json.loads(CHAT_BODY), "stream": True})
            for n in names:
                if n in ("a", "d") or n.startswith("d@"):
                    continue
                u, headers, proc = variants[n]
                hh = {"content-type": "application/json", "x-mock-chunks": "100", **headers}
                stream[n] = wrk(u + "/v1/chat/completions", args.duration, 8, hh, body, proc.p.pid)
                stream[n]["ttfb"] = ttfb_ms(u + "/v1/chat/completions", hh, body)

        label = {
            "a": "a upstream alone", "b": "b plain Envoy", "g": "g no-op wasm filter",
            "f0": "   llm-forward, no features", "c": "c keys+IP+limits+logs",
            "c0": "   c, level-0 key (body not held)", "d": "d c + cache hits",
            "l": "l c, fleet-wide limits",
            "o": "o OpenAI-Forward", "f0m": "   f0, logging.metrics off", "f0k": "   f0, cache.openai off",
            "f0x": "   f0, cache.openai + metrics off",
            "cm": "   c, chat log off (metrics on)", "cn": "   c, chat log and metrics off",
            "cnoip": "   c without the IP list", "cnolim": "   c without request limits",
        }
        for n in names:
            if n.endswith("@base"):
                label[n] = label[n[:-5]].rstrip() + " @baseline"
        if args.stat == "best":
            summary = {n: max(results[n], key=lambda r: r["rps"]) for n in names}
            cpu = {n: min(r["cpu_us"] for r in results[n]) for n in names}
        else:
            summary = {n: {k: statistics.median(r[k] for r in results[n]) for k in ("rps", "p50", "p99")} for n in names}
            cpu = {n: statistics.median(r["cpu_us"] for r in results[n]) for n in names}
        med = {n: summary[n]["rps"] for n in names}
        print(f"\nEnvoy --concurrency {args.concurrency}, wrk -t1 -c{args.connections}, {args.rounds} rounds x {args.duration}s, "
              f"non-streaming chat completions ({args.stat} of rounds; latency of that round)\n")
        print(f"{'variant':32} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'vs b':>6} {'RSS MiB':>8} "
              f"{'CPU us/req':>10} {'CPU b/x':>8}")
        for n in names:
            bad = sum(r["non2xx"] for r in results[n])
            ratio = med[n] / med["b"] if "b" in med else float("nan")
            cpu_ratio = cpu["b"] / cpu[n] if "b" in cpu and cpu[n] else float("nan")
            rss = rss_kib(variants[n][2].p.pid) / 1024
            print(f"{label[n]:32} {med[n]:>10.0f} {summary[n]['p50']:>8.2f} {summary[n]['p99']:>8.2f} {bad:>8} "
                  f"{ratio:>6.2f} {rss:>8.1f} {cpu[n]:>10.0f} {cpu_ratio:>8.2f}")
        print("(CPU b/x: plain Envoy's CPU per request over the variant's: its throughput ratio when Envoy's "
              "core is the bottleneck, steadier than req/s when wrk and the mock share the cores)")
        if stream:
            print("\nstreaming, 100-chunk SSE (wrk -c8):")
            for n, s in stream.items():
                print(f"  {label[n]:30} {s['rps']:>8.0f} streams/s  {s['bps'] / 1e6:>7.1f} MB/s  TTFB {s['ttfb']:.2f} ms"
                      f"  proxy CPU {s['cpu_us']:.0f} us/stream")
        for n, port in cache_ports.items():
            if n in names:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
                    text = r.read().decode()
                got = {k: int(float(v)) for k, v in re.findall(r"llm_forward_cache_(hits|misses)_total(?:\{[^}]*\})?\s+([\d.e+]+)", text)}
                print(f"\n{n}: cache service hits {got.get('hits', 0)}, misses {got.get('misses', 0)}")
        print()
        if "l" in names and "c" in names:
            with urllib.request.urlopen(f"http://127.0.0.1:{fleet_admin}/stats?filter=ratelimit_service_failed") as r:
                failed = r.read().decode().strip() or "none"
            print(f"fleet-wide limits (l) vs per-gateway limits (c): {med['l']:.0f} vs {med['c']:.0f} req/s "
                  f"({med['l'] / med['c']:.2f}), p99 {summary['l']['p99']:.2f} vs {summary['c']['p99']:.2f} ms "
                  f"(+{summary['l']['p99'] - summary['c']['p99']:.2f} ms); service failures (fail-open): {failed}")
        for a, b in (("c", "b"), ("d", "b"), ("g", "b"), ("f0", "b"), ("c", "o")):
            if a in med and b in med:
                print(f"ratio {a}/{b} = {med[a] / med[b]:.2f} (req/s)" + (
                    f", {cpu[b] / cpu[a]:.2f} (CPU per request)" if b != "o" else ""))
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
