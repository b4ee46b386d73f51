#!/usr/bin/env python3
"""Prices Envoy host calls from inside the VM: the no-op filter repeats one call N times per request
and the Envoy CPU time per request is compared with N = 0. Prints µs per call (figures only).

Usage: bench/probe.py [--calls N] [--duration S] [--rounds R] [probe ...]
Probes: request_map request_header set_request_header add_response_header response_map property
        set_property shared_get shared_cas metric clock response_body
Needs the release builds ./bench.sh makes.
"""
import argparse
import pathlib
import re
import statistics
import subprocess
import tempfile

import bench

PROBES = ["request_map", "request_header", "set_request_header", "add_response_header", "set_response_header", "response_map",
          "property", "set_property", "shared_get", "shared_cas", "metric", "clock", "response_body"]


def render(tmp, upstream, name, probe):
    """The no-op filter's Envoy config with plugin configuration `probe` ("<probe> <n>"): (yaml, cfg)."""
    cfg = bench.base_config(upstream, bench.free_port(), bench.free_port(), 1, tmp)
    (tmp / f"{name}.json").write_text(bench.json.dumps(cfg))
    out = subprocess.run([str(bench.GATEWAY), "render", "-c", str(tmp / f"{name}.json"), "--wasm-path",
                          str(bench.NOOP), "--log-dir", str(tmp)], capture_output=True, text=True, check=True).stdout
    # The plugin configuration is the only thing that differs: "<probe> <n>".
    out, count = re.subn(r"(configuration:\s*\n\s*'@type': type.googleapis.com/google.protobuf.StringValue\s*\n\s*value: )(.*)",
                         lambda m: m.group(1) + bench.json.dumps(probe), out)
    if count != 1:
        raise SystemExit("could not find the plugin configuration in the rendered config")
    (tmp / f"{name}.envoy.yaml").write_text(out)
    return tmp / f"{name}.envoy.yaml", cfg


def start(tmp, upstream, name, probe):
    yaml, cfg = render(tmp, upstream, name, probe)
    proc = bench.Proc([bench.shutil.which("envoy"), "-c", str(yaml), "--disable-hot-restart",
                       "--concurrency", "1", "--log-level", "error"], tmp / f"{name}.envoy.log")
    bench.wait_http(f"http://127.0.0.1:{cfg['server']['admin_port']}/ready")
    return f"http://127.0.0.1:{cfg['server']['port']}/v1/chat/completions", proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("probes", nargs="*", default=PROBES)
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="llm-forward-probe-"))
    procs = []
    try:
        port = bench.free_port()
        procs.append(bench.Proc([str(bench.GATEWAY), "mock", "--listen", f"127.0.0.1:{port}"], tmp / "mock.log"))
        upstream = f"http://127.0.0.1:{port}"
        bench.wait_http(upstream + "/v1/models")
        runs = {"none": start(tmp, upstream, "none", "none 0")}
        for p in args.probes:
            runs[p] = start(tmp, upstream, p, f"{p} {args.calls}")
        procs += [proc for _, proc in runs.values()]
        cpu = {n: [] for n in runs}
        for _ in range(args.rounds):
            for n, (url, proc) in runs.items():
                cpu[n].append(bench.wrk(url, args.duration, 32, {}, bench.CHAT_BODY, proc.p.pid)["cpu_us"])
        base = min(cpu["none"])
        print(f"\nEnvoy CPU per request without probe calls: {base:.1f} us; {args.calls} calls per request\n")
        print(f"{'probe':22} {'us/req':>8} {'us/call':>8}")
        for n in args.probes:
            med = min(cpu[n])
            print(f"{n:22} {med:8.1f} {(med - base) / args.calls:8.2f}")
    finally:
        for p in procs:
            p.stop()


if __name__ == "__main__":
    main()
