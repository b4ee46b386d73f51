// End-to-end test of the web console: `llm-forward run --demo --console` with a config file, driven
// in headless Chromium (Debian's /usr/bin/chromium) by playwright-core.
//
//   cd integration-tests/console && npm ci && npm test
//
// Needs the debug binary and the release .wasm (./test.sh builds both) and Envoy on PATH.
// Screenshots of every page go to $CONSOLE_SCREENSHOTS (default: a new temp folder, printed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const BIN = process.env.LLM_FORWARD_BIN || path.join(root, 'target/debug/llm-forward');
const WASM = process.env.LLM_FORWARD_WASM || path.join(root, 'target/wasm32-wasip1/release/llm_forward_filter.wasm');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.CONSOLE_SCREENSHOTS || fs.mkdtempSync(path.join(os.tmpdir(), 'llmf-console-shots-'));
const TOKEN = 'e2e-' + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function configText({ port, admin, consolePort, limits = '' }) {
  return `server:
  address: 127.0.0.1
  port: ${port}
  concurrency: 1
log_dir: Log
logging:
  chat: true
cache:
  openai: false
console:
  port: ${consolePort}
  token: ${TOKEN}
routes:
  - route: /
    base_url: http://127.0.0.1:9   # --demo points every route at the built-in mock
${limits}`;
}

let dir, gateway, output = '', ports, context, page;

async function waitFor(cond, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n--- llm-forward output ---\n${output}`);
    await sleep(100);
  }
}

// Each request on a new connection: a connection opened before an apply keeps the previous
// config until Envoy drains it (Envoy's listener update semantics).
function chat(content) {
  const body = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content }] });
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port: ports.port, path: '/v1/chat/completions', method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function shot(name) {
  const file = path.join(SHOTS, name + '.png');
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

before(async () => {
  for (const [what, p] of [['llm-forward', BIN], ['the filter', WASM], ['chromium', CHROMIUM]]) {
    assert.ok(fs.existsSync(p), `${what} is missing at ${p}`);
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmf-console-'));
  ports = { port: await freePort(), admin: await freePort(), consolePort: await freePort() };
  fs.writeFileSync(path.join(dir, 'llm-forward.yaml'), configText(ports));
  gateway = spawn(BIN, ['run', '--demo', '--console', '--config', 'llm-forward.yaml'], {
    cwd: dir,
    env: { ...process.env, LLM_FORWARD_WASM: WASM },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  gateway.stdout.on('data', (d) => { output += d; });
  gateway.stderr.on('data', (d) => { output += d; });
  await waitFor(() => output.includes('console: http://'), 'the console banner line', 60000);

  context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(os.tmpdir(), 'llmf-chromium-')), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 860 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (e) => { output += `\n[page error] ${e.message}`; });
});

after(async () => {
  if (context) await context.close();
  if (gateway && gateway.exitCode === null) {
    gateway.kill('SIGTERM');
    await new Promise((r) => gateway.once('exit', r));
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  console.log(`screenshots: ${SHOTS}`);
});

test('the console shows traffic and chat logs, and a limit applied in the editor takes effect', async () => {
  const base = `http://127.0.0.1:${ports.consolePort}/`;

  // The API refuses calls without the token, and a wrong one.
  assert.equal((await fetch(base + 'api/overview')).status, 401);
  assert.equal((await fetch(base + 'api/overview', { headers: { Authorization: 'Bearer nope' } })).status, 401);

  // Login: a wrong token is refused, the right one opens the overview.
  await page.goto(base);
  await page.locator('#token-input').fill('wrong-token');
  await page.locator('#login-button').click();
  await page.locator('#login-error', { hasText: 'not accepted' }).waitFor();
  await shot('0-login');
  await page.locator('#token-input').fill(TOKEN);
  await page.locator('#login-button').click();
  await page.locator('#overview .card', { hasText: 'LIVE' }).waitFor();
  await page.locator('#overview table', { hasText: 'openai' }).waitFor();
  await shot('1-overview');

  // A chat exchange through the gateway appears in the live chat log, answer rendered.
  await page.locator('#tabs button[data-tab=logs]').click();
  const r = await chat('Please **greet** the e2e test');
  assert.equal(r.status, 200, r.body);
  const exchange = page.locator('.exchange', { hasText: 'Please **greet** the e2e test' });
  await exchange.waitFor({ timeout: 20000 });
  await exchange.locator('.md', { hasText: 'Hello world, from mock!' }).waitFor();
  assert.match(await exchange.locator('.meta').innerText(), /200[\s\S]*gpt-4o[\s\S]*10 \+ 4 tokens/);

  // An answer is rendered as Markdown, and HTML in a log is shown as text, never run. (A record
  // appended to the chat log the way Envoy writes them.)
  const md = '## Plan\n\n**Bold** and `code`, a [link](https://example.com/x).\n\n- one\n- two\n\n```js\nlet x = 1;\n```\n\n' +
    '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
  const record = { time: new Date().toISOString(), uid: 'md-test', route: 'root', model: 'gpt-4o', status: 200, stream: true,
    latency_ms: 42, messages: [{ role: 'user', content: 'show markdown <b>not bold</b>' }],
    answer: { choices: [{ index: 0, content: md, finish_reason: 'stop', tool_calls: [] }] },
    usage: { prompt_tokens: 5, completion_tokens: 30, total_tokens: 35 } };
  fs.appendFileSync(path.join(dir, 'Log/root/chat.log'), JSON.stringify(record) + '\n');
  const mdBox = page.locator('.exchange[data-uid=md-test]');
  await mdBox.waitFor();
  assert.equal(await mdBox.locator('.md h4').innerText(), 'Plan');
  assert.equal(await mdBox.locator('.md strong').innerText(), 'Bold');
  assert.equal(await mdBox.locator('.md pre code').innerText(), 'let x = 1;');
  assert.equal(await mdBox.locator('.md li').count(), 2);
  assert.equal(await mdBox.locator('.md a').getAttribute('href'), 'https://example.com/x');
  assert.equal(await mdBox.locator('img, script, b').count(), 0, 'no HTML from the log became elements');
  assert.match(await mdBox.innerText(), /<img src=x onerror=/);
  assert.match(await mdBox.innerText(), /<b>not bold<\/b>/);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await shot('2-chat-log');

  // The privacy switch hides message content server-side.
  await page.locator('#private').check();
  await page.locator('.exchange .pill', { hasText: 'content hidden' }).first().waitFor();
  assert.equal(await page.locator('.exchange', { hasText: 'greet the e2e' }).count(), 0);
  assert.equal(await page.locator('.exchange', { hasText: 'Hello world, from mock!' }).count(), 0);
  await shot('3-chat-log-private');
  await page.locator('#private').uncheck();

  // Live metrics: charts fed from Envoy's stats while traffic flows.
  await page.locator('#tabs button[data-tab=metrics]').click();
  for (let i = 0; i < 8; i++) {
    await chat('metrics ' + i);
    await sleep(400);
  }
  await page.locator('#usage-table td', { hasText: 'gpt-4o' }).waitFor();
  await waitFor(async () => (await page.locator('#chart-tpm .u-legend').innerText()).includes('root'), 'the tokens chart');
  await shot('4-metrics');

  // Config editor: a bad limit gets a field error; a good one is applied and limits the next requests.
  await page.locator('#tabs button[data-tab=config]').click();
  await waitFor(async () => (await page.locator('#config-text').inputValue()).includes('routes:'), 'the config text');
  const original = await page.locator('#config-text').inputValue();
  const limited = (limit) => original + `limits:\n  strategy: sliding-window\n  requests:\n    - path: /v1/chat/completions\n      limit: ${limit}\n      per: global\n`;
  await page.locator('#config-text').fill(limited('2/fortnight'));
  await page.locator('#config-validate').click();
  await page.locator('.field-error', { hasText: 'limits.requests[0]' }).waitFor();
  await shot('5-config-error');
  await page.locator('#config-text').fill(limited('2/minute'));
  await page.locator('#config-validate').click();
  await page.locator('#config-valid').waitFor();
  await page.locator('#config-apply').click();
  await page.locator('#config-applied').waitFor({ timeout: 15000 });
  await shot('6-config-applied');

  // The file was written with a backup next to it.
  assert.match(fs.readFileSync(path.join(dir, 'llm-forward.yaml'), 'utf8'), /limit: 2\/minute/);
  assert.ok(fs.readdirSync(dir).some((f) => /^llm-forward\.yaml\.\d{8}T\d{6}Z(-\d+)?\.bak$/.test(f)), fs.readdirSync(dir).join(' '));

  // The running gateway limits: within a few requests, a 429 with the OpenAI-shaped body.
  const statuses = [];
  let limitedBody = '';
  await waitFor(async () => {
    const res = await chat('limited?');
    statuses.push(res.status);
    if (res.status === 429) limitedBody = res.body;
    return res.status === 429;
  }, 'a 429 after the limit was applied', 15000);
  assert.ok(statuses.length <= 3, `2/minute allows at most 2 more: ${statuses}`);
  assert.match(limitedBody, /rate_limit_exceeded/);
  const again = await chat('still limited?');
  assert.equal(again.status, 429);

  // The overview now lists the limit.
  await page.locator('#tabs button[data-tab=overview]').click();
  await page.locator('#overview table', { hasText: '2/minute' }).waitFor();
  await shot('7-overview-limited');
});
