// Runs the llm-forward filter in Node's V8 (the engine Envoy embeds) behind a minimal fake
// proxy-wasm host, and drives N identical non-stream chat exchanges through it. With
// `node --cpu-prof` this profiles the filter's own wasm code by function name, which `perf` on a
// stripped Envoy cannot do. Host calls here are cheap JS functions, so the profile shows the
// Rust side only; `bench/probe.py` prices Envoy's host calls.
//
// Usage: node host.cjs <filter.wasm> <plugin-config.json> [requests] [--trace] [--profile]
//   --trace    host calls per exchange
//   --profile  V8's sampling profiler over the measured loop: the filter's functions by inclusive
//              and self time (names come from the .wasm's name section)
// bench/wasm-profile.sh renders the plugin configuration from an llm-forward.yaml and runs this.
'use strict';
const fs = require('fs');

const [wasmPath, configPath, countArg, ...flags] = process.argv.slice(2);
const COUNT = Number(countArg || 100000);
const TRACE = flags.includes('--trace');
const PROFILE = flags.includes('--profile');
const enc = new TextEncoder();
const dec = new TextDecoder();

const CHAT_BODY = enc.encode('{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}');
const ANSWER = enc.encode('{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world, from mock!"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":4,"total_tokens":14},"system_fingerprint":"fp_mock"}');
const REQUEST_HEADERS = [
  [':authority', '127.0.0.1:8000'], [':path', '/v1/chat/completions'], [':method', 'POST'],
  [':scheme', 'http'], ['content-type', 'application/json'], ['authorization', 'Bearer fk-bench'],
  ['content-length', String(CHAT_BODY.length)], ['user-agent', 'wrk'], ['x-forwarded-proto', 'http'],
  ['x-request-id', '3231934b-d40f-41fa-8d3a-d69702677ee5'],
];
const RESPONSE_HEADERS = [
  [':status', '200'], ['content-type', 'application/json'], ['x-mock', '1'],
  ['openai-processing-ms', '1'], ['x-request-id', 'mock-1'], ['content-length', String(ANSWER.length)],
  ['date', 'Thu, 26 Nov 2026 09:57:36 GMT'], ['x-envoy-upstream-service-time', '0'],
];

let inst;
const mem = () => new Uint8Array(inst.exports.memory.buffer);
const view = () => new DataView(inst.exports.memory.buffer);
const str = (ptr, len) => dec.decode(mem().subarray(ptr, ptr + len));
const calls = new Map();
const count = (name) => { if (TRACE) calls.set(name, (calls.get(name) || 0) + 1); };

// Hands `bytes` to the module the way Envoy does: proxy_on_memory_allocate, copy, out-pointers.
function give(bytes, ptrOut, sizeOut) {
  const p = inst.exports.proxy_on_memory_allocate(bytes.length);
  mem().set(bytes, p);
  view().setUint32(ptrOut, p, true);
  view().setUint32(sizeOut, bytes.length, true);
  return 0;
}

function encodePairs(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + parts.length * 8;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, parts.length, true);
  let at = 4;
  for (const [k, v] of parts) { dv.setUint32(at, k.length, true); dv.setUint32(at + 4, v.length, true); at += 8; }
  for (const [k, v] of parts) { out.set(k, at); at += k.length + 1; out.set(v, at); at += v.length + 1; }
  return out;
}

const maps = { 0: REQUEST_HEADERS.map((p) => [...p]), 2: RESPONSE_HEADERS.map((p) => [...p]) };
const buffers = { 0: CHAT_BODY, 1: ANSWER, 7: fs.readFileSync(configPath) };
const encoded = {};
const shared = new Map();
let cas = 1;
let nowNs = 1_798_292_415_000_000_000n;

const env = {
  proxy_log: (level, p, n) => { count('log'); if (level >= 2) console.error('[filter]', str(p, n)); return 0; },
  proxy_get_header_map_pairs: (t, po, so) => {
    count('get_header_map_pairs');
    // Encoded once per map version: the JS encoder would otherwise dominate the profile.
    if (!encoded[t]) encoded[t] = encodePairs(maps[t] || []);
    return give(encoded[t], po, so);
  },
  proxy_get_header_map_value: (t, kp, kn, po, so) => {
    count('get_header_map_value');
    const k = str(kp, kn); const hit = (maps[t] || []).find(([n]) => n === k);
    return hit ? give(enc.encode(hit[1]), po, so) : 1;
  },
  proxy_replace_header_map_value: (t, kp, kn, vp, vn) => {
    count('replace_header_map_value');
    const k = str(kp, kn); const v = str(vp, vn); const m = maps[t] || (maps[t] = []);
    const hit = m.find(([n]) => n === k); if (hit) hit[1] = v; else m.push([k, v]); encoded[t] = null; return 0;
  },
  proxy_add_header_map_value: (t, kp, kn, vp, vn) => { count('add_header_map_value'); (maps[t] || (maps[t] = [])).push([str(kp, kn), str(vp, vn)]); encoded[t] = null; return 0; },
  proxy_remove_header_map_value: (t, kp, kn) => { count('remove_header_map_value'); const k = str(kp, kn); maps[t] = (maps[t] || []).filter(([n]) => n !== k); encoded[t] = null; return 0; },
  proxy_set_header_map_pairs: () => { count('set_header_map_pairs'); return 0; },
  proxy_get_buffer_bytes: (t, start, max, po, so) => {
    count('get_buffer_bytes'); const b = buffers[t]; if (!b) return 1;
    return give(b.subarray(start, Math.min(b.length, start + max)), po, so);
  },
  proxy_set_buffer_bytes: () => { count('set_buffer_bytes'); return 0; },
  proxy_get_property: (pp, pn, po, so) => {
    count('get_property'); const path = str(pp, pn).split('\0').filter(Boolean).join('.');
    if (path === 'source.address') return give(enc.encode('127.0.0.1:45678'), po, so);
    return 1;
  },
  proxy_set_property: () => { count('set_property'); return 0; },
  proxy_get_shared_data: (kp, kn, po, so, co) => {
    count('get_shared_data'); const e = shared.get(str(kp, kn)); if (!e) return 1;
    give(e.value, po, so); view().setUint32(co, e.cas, true); return 0;
  },
  proxy_set_shared_data: (kp, kn, vp, vn, c) => {
    count('set_shared_data'); const k = str(kp, kn); const e = shared.get(k);
    if (c !== 0 && e && e.cas !== c) return 8;
    shared.set(k, { value: mem().slice(vp, vp + vn), cas: cas++ }); return 0;
  },
  proxy_get_current_time_nanoseconds: (p) => { count('get_current_time'); nowNs += 1_000_000n; view().setBigUint64(p, nowNs, true); return 0; },
  proxy_define_metric: (t, np, nn, idp) => { count('define_metric'); view().setUint32(idp, 1 + (cas++ % 1000), true); return 0; },
  proxy_increment_metric: () => { count('increment_metric'); return 0; },
  proxy_set_tick_period_milliseconds: () => 0,
  proxy_send_local_response: () => { count('send_local_response'); return 0; },
  proxy_call_foreign_function: () => { count('call_foreign_function'); return 1; },
  proxy_continue_stream: () => 0, proxy_close_stream: () => 0, proxy_done: () => 0,
  proxy_set_effective_context: () => 0, proxy_get_status: () => 1, proxy_http_call: () => 1,
  proxy_grpc_call: () => 1, proxy_grpc_stream: () => 1, proxy_grpc_send: () => 1, proxy_grpc_cancel: () => 1,
  proxy_grpc_close: () => 1, proxy_register_shared_queue: () => 1, proxy_resolve_shared_queue: () => 1,
  proxy_enqueue_shared_queue: () => 1, proxy_dequeue_shared_queue: () => 1,
};
const wasi = {
  random_get: (p, n) => { mem().fill(7, p, p + n); return 0; },
  environ_sizes_get: (cp, sp) => { view().setUint32(cp, 0, true); view().setUint32(sp, 0, true); return 0; },
  environ_get: () => 0,
  fd_write: (fd, iovs, n, written) => { view().setUint32(written, 0, true); return 0; },
  proc_exit: (code) => { throw new Error(`proc_exit(${code})`); },
};

const wasmModule = new WebAssembly.Module(fs.readFileSync(wasmPath));
inst = new WebAssembly.Instance(wasmModule, { env, wasi_snapshot_preview1: wasi });
const x = inst.exports;
x._initialize();
x.proxy_on_context_create(1, 0);
x.proxy_on_vm_start(1, 0);
if (!x.proxy_on_configure(1, buffers[7].length)) throw new Error('on_configure refused the configuration');

const encodedRequest = encodePairs(REQUEST_HEADERS);
const encodedResponse = encodePairs(RESPONSE_HEADERS);

function exchange(id) {
  maps[0] = REQUEST_HEADERS.map((p) => [...p]);
  maps[2] = RESPONSE_HEADERS.map((p) => [...p]);
  encoded[0] = encodedRequest;
  encoded[2] = encodedResponse;
  x.proxy_on_context_create(id, 1);
  x.proxy_on_request_headers(id, maps[0].length, 0);
  x.proxy_on_request_body(id, CHAT_BODY.length, 1);
  x.proxy_on_response_headers(id, maps[2].length, 0);
  x.proxy_on_response_body(id, ANSWER.length, 1);
  x.proxy_on_log(id);
  x.proxy_on_done(id);
  x.proxy_on_delete(id);
}

for (let i = 0; i < 2000; i++) exchange(2 + i); // warm-up (TurboFan tiers up)
calls.clear();

function measure() {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < COUNT; i++) exchange(10_000 + i);
  const ns = Number(process.hrtime.bigint() - t0);
  console.log(`${COUNT} exchanges, ${(ns / COUNT / 1000).toFixed(2)} us each (filter code + trivial JS host)`);
  if (TRACE) for (const [k, v] of [...calls].sort((a, b) => b[1] - a[1])) console.log(`  ${k}: ${(v / COUNT).toFixed(2)} per exchange`);
}

// Inclusive and self time per function name from a V8 CPU profile.
function report(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children || []) parent.set(c, n.id);
  const selfOf = new Map();
  profile.samples.forEach((id, i) => selfOf.set(id, (selfOf.get(id) || 0) + (profile.timeDeltas[i] || 0)));
  let total = 0;
  const self = new Map();
  const incl = new Map();
  for (const [id, t] of selfOf) {
    total += t;
    const name = (n) => n.callFrame.functionName || '(js)';
    self.set(name(byId.get(id)), (self.get(name(byId.get(id))) || 0) + t);
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const n = name(byId.get(cur));
      if (!seen.has(n)) { seen.add(n); incl.set(n, (incl.get(n) || 0) + t); }
    }
  }
  const demangle = (n) => n.replace(/17h[0-9a-f]{16}E$/, '').replace(/\$LT\$/g, '<').replace(/\$GT\$/g, '>')
    .replace(/\$u20\$/g, ' ').replace(/\$RF\$/g, '&').replace(/\.\./g, '::');
  const ours = (n) => /llm_forward|serde|sha2|alloc|dlmalloc|proxy_on_|fmt/.test(n);
  for (const [title, map] of [['inclusive', incl], ['self', self]]) {
    console.log(`\n${title} time (share of the measured loop):`);
    [...map].filter(([n]) => ours(n)).sort((a, b) => b[1] - a[1]).slice(0, 30)
      .forEach(([n, t]) => console.log(`${(100 * t / total).toFixed(1).padStart(6)}%  ${demangle(n).slice(0, 120)}`));
  }
}

if (PROFILE) {
  const inspector = require('inspector');
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable', () => session.post('Profiler.start', () => {
    measure();
    session.post('Profiler.stop', (err, { profile }) => { if (err) throw err; report(profile); });
  }));
} else {
  measure();
}
