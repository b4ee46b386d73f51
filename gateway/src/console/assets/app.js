// llm-forward console. Plain JS, no build step. Every piece of data from the server is put into the
// page as text nodes (textContent / append of strings), never as HTML: chat logs hold untrusted text.
'use strict';
(() => {
  const TOKEN_KEY = 'llm-forward-console-token';
  const $ = (id) => document.getElementById(id);

  /** Element builder: attributes are set as attributes, children appended as nodes or text. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c == null || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  // ---- token -------------------------------------------------------------------------------
  // Accepted once from #token=… (never sent to the server) or ?token=…, then removed from the URL.
  (function takeTokenFromUrl() {
    const hash = new URLSearchParams(location.hash.slice(1));
    const query = new URLSearchParams(location.search);
    const t = hash.get('token') || query.get('token');
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t);
      history.replaceState(null, '', location.pathname);
    }
  })();

  class Unauthorized extends Error {}

  async function api(path, options = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY) || '';
    const headers = Object.assign({ Authorization: 'Bearer ' + token }, options.headers || {});
    const resp = await fetch(path, Object.assign({}, options, { headers, cache: 'no-store' }));
    if (resp.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(token ? 'That token was not accepted.' : '');
      throw new Unauthorized();
    }
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    return { status: resp.status, body };
  }

  function showLogin(message) {
    stopPolling();
    $('app').hidden = true;
    $('tabs').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('token-input').focus();
  }

  async function start() {
    $('login').hidden = true;
    try {
      const r = await api('/api/overview');
      if (r.status !== 200) throw new Error('overview: ' + r.status);
      $('app').hidden = false;
      $('tabs').hidden = false;
      $('logout').hidden = false;
      renderOverview(r.body);
      select(currentTab);
    } catch (e) {
      if (!(e instanceof Unauthorized)) showLogin('Cannot reach the console: ' + e.message);
    }
  }

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token-input').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $('token-input').value = '';
    start();
  });
  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('');
  });

  // ---- tabs and polling --------------------------------------------------------------------
  let currentTab = 'overview';
  let timer = null;
  const pollers = {
    overview: { every: 5000, run: loadOverview },
    metrics: { every: 2000, run: loadMetrics },
    logs: { every: 2000, run: loadLogs },
    config: { every: 0, run: loadConfigOnce },
  };

  function stopPolling() {
    if (timer) clearTimeout(timer);
    timer = null;
  }

  async function tick() {
    const p = pollers[currentTab];
    const tab = currentTab;
    try {
      if (!document.hidden) await p.run();
      $('status').textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      if (e instanceof Unauthorized) return;
      $('status').textContent = 'error: ' + e.message;
    }
    if (p.every && tab === currentTab && !$('app').hidden) timer = setTimeout(tick, p.every);
  }

  function select(tab) {
    currentTab = tab;
    for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.tab === tab);
    for (const s of document.querySelectorAll('.tab')) s.hidden = s.id !== 'tab-' + tab;
    stopPolling();
    tick();
  }
  for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => select(b.dataset.tab));
  document.addEventListener('visibilitychange', () => { if (!document.hidden && !$('app').hidden) { stopPolling(); tick(); } });

  // ---- overview ----------------------------------------------------------------------------
  async function loadOverview() {
    const r = await api('/api/overview');
    if (r.status === 200) renderOverview(r.body);
  }

  function card(label, value, cls) {
    return el('div', { class: 'card' }, el('div', { class: 'label' }, label), el('div', { class: 'value ' + (cls || '') }, value));
  }

  function table(headers, rows) {
    return el('table', null,
      el('thead', null, el('tr', null, ...headers.map((h) => el('th', null, h)))),
      el('tbody', null, ...rows.map((r) => el('tr', null, ...r.map((c) => el('td', null, c))))));
  }

  function renderOverview(o) {
    const box = $('overview');
    box.replaceChildren();
    const ready = o.envoy && o.envoy.ready;
    const cache = o.cache || {};
    const ratio = cache.hit_ratio == null ? '–' : (cache.hit_ratio * 100).toFixed(1) + ' %';
    box.append(el('div', { class: 'cards' },
      card('Envoy', ready ? 'ready (' + o.envoy.state + ')' : 'not ready: ' + (o.envoy.error || o.envoy.state), ready ? 'ok' : 'error'),
      card('Listener', o.listener),
      card('Version', o.version + (o.demo ? ' (demo)' : '')),
      card('Cache', cache.enabled ? cache.backend + ', hit ratio ' + ratio : 'off'),
      card('Chat log', o.logging.chat ? (o.logging.messages ? 'on' : 'on, without messages') : 'off'),
    ));
    const last = o.reload && o.reload.last;
    box.append(el('p', { class: 'muted' }, 'Config: ', el('code', null, o.config_path || '(built-in defaults)'),
      last ? ' — last reload ' + last.at + ': ' + (last.applied ? 'applied' : 'refused (' + last.messages.join('; ') + ')') : ''));

    box.append(el('h2', null, 'Routes'));
    box.append(table(['prefix', 'name', 'upstream', 'type', 'timeout', 'retries'],
      o.routes.map((r) => [el('code', null, r.route), r.name, el('code', null, r.upstream), r.type, r.timeout + ' s', r.retries])));

    box.append(el('h2', null, 'Keys per level'));
    const levels = o.keys.levels;
    if (!levels.length) box.append(el('p', { class: 'muted' }, 'No forward or upstream keys configured: clients\u2019 own keys pass through.'));
    else box.append(table(['level', 'forward keys', 'names', 'upstream keys', 'models'],
      levels.map((l) => [String(l.level), String(l.forward_keys), l.forward_key_names.join(', ') || '–', String(l.upstream_keys),
        l.level === 0 ? 'all' : (l.models ? l.models.join(', ') : 'all')])));
    box.append(el('p', { class: 'muted' }, o.keys.forward_total + ' forward keys, ' + o.keys.upstream_total +
      ' upstream keys (values are never shown). IP lists: ' + o.ip.allow + ' allow, ' + o.ip.deny + ' deny.'));

    box.append(el('h2', null, 'Limits'));
    const lim = o.limits || {};
    const rules = [];
    for (const kind of ['requests', 'tokens', 'pacing']) {
      for (const r of lim[kind] || []) rules.push([kind, el('code', null, r.path), String(r.limit), r.per || '–', r.level == null ? 'all' : String(r.level)]);
    }
    if (lim.global && String(lim.global) !== 'inf' && String(lim.global) !== 'unlimited') rules.push(['global', 'other paths', String(lim.global), 'key', 'all']);
    if (!rules.length) box.append(el('p', { class: 'muted' }, 'No limits.'));
    else box.append(table(['kind', 'path', 'limit', 'per', 'level'], rules));
    box.append(el('p', { class: 'muted' }, 'Strategy: ' + (lim.strategy || 'fixed-window')));
  }

  // ---- metrics -----------------------------------------------------------------------------
  const charts = {};
  const palette = ['#2f6fde', '#c9372c', '#1f8a4c', '#b7791f', '#7b3fbf', '#0f8c8c', '#d4458e', '#5c6b7a'];

  function chartFor(id, labels, data) {
    const host = $(id);
    const key = labels.join('\u0000');
    const width = Math.max(300, host.clientWidth || 800);
    let c = charts[id];
    if (!c || c.key !== key) {
      if (c) c.plot.destroy();
      host.replaceChildren();
      const series = [{}].concat(labels.map((l, i) => ({ label: l, stroke: palette[i % palette.length], width: 2,
        value: (u, v) => v == null ? '–' : v.toFixed(2) })));
      const plot = new uPlot({ width, height: 200, series, scales: { x: { time: true } }, axes: [{}, { size: 60 }], legend: { live: true } }, data, host);
      c = charts[id] = { key, plot };
    } else {
      if (Math.abs(c.plot.width - width) > 20) c.plot.setSize({ width, height: 200 });
      c.plot.setData(data);
    }
  }

  async function loadMetrics() {
    const r = await api('/api/metrics');
    if (r.status !== 200) return;
    const m = r.body;
    $('metrics-error').textContent = m.error ? 'Envoy stats: ' + m.error : '';
    const h = m.history || [];
    const xs = h.map((p) => p.t);
    const lastP = h[h.length - 1];
    const t = m.totals || {};
    const totalTpm = lastP ? Object.values(lastP.tpm).reduce((a, b) => a + b, 0) : 0;
    const errRate = lastP && lastP.rps > 0 ? ((lastP.rps_4xx + lastP.rps_5xx) / lastP.rps * 100).toFixed(1) + ' %' : '–';
    const lookups = (t.cache_hits || 0) + (t.cache_misses || 0);
    $('metric-cards').replaceChildren(
      card('Requests / s', lastP ? lastP.rps.toFixed(2) : '–'),
      card('Error rate (4xx+5xx)', errRate, lastP && lastP.rps_5xx > 0 ? 'error' : ''),
      card('Tokens / min', lastP ? Math.round(totalTpm).toString() : '–'),
      card('Cache hit ratio', lookups ? ((t.cache_hits / lookups) * 100).toFixed(1) + ' %' : '–'),
      card('Requests since start', t.requests == null ? '–' : String(t.requests)),
    );
    chartFor('chart-rps', ['requests/s', '4xx/s', '5xx/s'], [xs, h.map((p) => p.rps), h.map((p) => p.rps_4xx), h.map((p) => p.rps_5xx)]);
    const labels = [...new Set(h.flatMap((p) => Object.keys(p.tpm)))].sort().slice(0, 8);
    chartFor('chart-tpm', labels.length ? labels : ['tokens/min'],
      [xs].concat(labels.length ? labels.map((l) => h.map((p) => p.tpm[l] ?? 0)) : [h.map(() => 0)]));
    chartFor('chart-cache', ['hits/s', 'misses/s'], [xs, h.map((p) => p.cache_hits), h.map((p) => p.cache_misses)]);
    const tbody = $('usage-table').querySelector('tbody');
    tbody.replaceChildren(...(m.usage || []).map((u) => el('tr', null,
      el('td', null, u.route), el('td', null, u.model), el('td', null, u.level), el('td', null, String(u.requests)),
      el('td', null, String(u.prompt_tokens)), el('td', null, String(u.completion_tokens)))));
  }

  // ---- chat log ----------------------------------------------------------------------------
  let cursor = 0;
  const MAX_SHOWN = 100;

  $('private').addEventListener('change', () => {
    cursor = 0;
    $('log-list').replaceChildren();
    tick();
  });

  async function loadLogs() {
    const priv = $('private').checked ? 1 : 0;
    const first = cursor === 0;
    const r = await api('/api/logs?after=' + cursor + '&limit=50&private=' + priv);
    if (r.status !== 200) return;
    const b = r.body;
    cursor = b.cursor;
    const list = $('log-list');
    if (!b.enabled) $('log-info').textContent = 'Chat logs are off (logging.chat: false): nothing to show.';
    else $('log-info').textContent = 'Newest first; ' + list.children.length + ' shown (' + (b.private ? 'content hidden' : 'with content') + ').';
    for (const rec of b.records) list.prepend(renderExchange(rec, !first));
    while (list.children.length > MAX_SHOWN) list.lastChild.remove();
    if (b.enabled) $('log-info').textContent = 'Newest first; ' + list.children.length + ' shown (' + (b.private ? 'content hidden' : 'with content') + ').';
  }

  function textOf(content) {
    if (content == null) return '';
    if (typeof content === 'string') return content;
    if (Array.isArray(content)) return content.map((p) => (p && typeof p.text === 'string') ? p.text : (p && p.type ? '[' + p.type + ']' : '')).join('\n');
    return JSON.stringify(content);
  }

  function renderExchange(r, fresh) {
    const u = r.usage || {};
    const status = Number(r.status);
    const meta = el('div', { class: 'meta' },
      el('span', { class: 'pill ' + (status >= 200 && status < 300 ? 'good' : status >= 500 ? 'bad' : 'warn') }, String(r.status)),
      el('span', null, r.time || ''),
      el('span', { class: 'pill' }, 'route ' + (r.route || '?')),
      el('span', { class: 'pill' }, r.model || 'no model'),
      r.key_name ? el('span', { class: 'pill' }, r.key_name + ' (level ' + r.level + ')') : null,
      el('span', null, (r.latency_ms ?? '?') + ' ms' + (r.ttfb_ms != null ? ' (first byte ' + r.ttfb_ms + ' ms)' : '')),
      u.total_tokens != null ? el('span', null, u.prompt_tokens + ' + ' + u.completion_tokens + ' tokens') : null,
      r.stream ? el('span', { class: 'pill' }, 'stream') : null,
      r.cache ? el('span', { class: 'pill ' + (r.cache === 'hit' ? 'good' : '') }, 'cache ' + r.cache) : null,
      r.redacted ? el('span', { class: 'pill warn' }, 'content hidden') : null,
      r.truncated ? el('span', { class: 'pill warn' }, 'truncated') : null,
    );
    const box = el('div', { class: 'exchange' + (fresh ? ' fresh' : ''), 'data-uid': r.uid || '' }, meta);
    const msgs = Array.isArray(r.messages) ? r.messages : [];
    // The last few turns of the request; earlier context is folded away.
    const shown = msgs.slice(-3);
    if (msgs.length > shown.length) box.append(el('div', { class: 'muted' }, '… ' + (msgs.length - shown.length) + ' earlier messages'));
    for (const m of shown) box.append(el('div', { class: 'turn' }, el('div', { class: 'role' }, m.role || 'message'), el('div', { class: 'user' }, textOf(m.content))));
    if (r.prompt != null) box.append(el('div', { class: 'turn' }, el('div', { class: 'role' }, 'prompt'), el('div', { class: 'user' }, textOf(r.prompt))));
    const choices = (r.answer && r.answer.choices) || [];
    for (const c of choices) {
      const turn = el('div', { class: 'turn' }, el('div', { class: 'role' }, 'assistant' + (choices.length > 1 ? ' #' + c.index : '') + (c.finish_reason ? ' · ' + c.finish_reason : '')));
      if (c.reasoning_content) turn.append(el('details', null, el('summary', null, 'reasoning'), el('div', { class: 'user' }, c.reasoning_content)));
      if (c.content) turn.append(el('div', { class: 'md' }, renderMarkdown(c.content)));
      for (const t of c.tool_calls || []) turn.append(el('div', { class: 'md' }, el('code', null, (t.name || 'tool') + '(' + (t.arguments || '') + ')')));
      box.append(turn);
    }
    if (!choices.length && status >= 300) box.append(el('div', { class: 'turn muted' }, 'no answer (status ' + status + ')'));
    return box;
  }

  // A small Markdown subset rendered to DOM nodes (text is never parsed as HTML): fenced code,
  // headings, lists, quotes, rules, paragraphs; inline code, bold, italic and http(s) links.
  function renderMarkdown(src) {
    const out = document.createDocumentFragment();
    const lines = String(src).replace(/\r\n?/g, '\n').split('\n');
    const isUl = (l) => /^\s*[-*+]\s+/.test(l);
    const isOl = (l) => /^\s*\d+[.)]\s+/.test(l);
    const isFence = (l) => /^\s*(```|~~~)/.test(l);
    const isHeading = (l) => /^#{1,6}\s+/.test(l);
    const isQuote = (l) => /^\s*>/.test(l);
    const isRule = (l) => /^\s*([-*_])(\s*\1){2,}\s*$/.test(l);
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (isFence(line)) {
        const mark = line.trim().slice(0, 3);
        const lang = line.trim().slice(3).trim();
        const buf = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(mark)) buf.push(lines[i++]);
        i++;
        out.append(el('pre', null, el('code', { 'data-lang': lang || null }, buf.join('\n'))));
      } else if (isHeading(line)) {
        const m = line.match(/^(#{1,6})\s+(.*)$/);
        out.append(inline(el('h' + Math.min(m[1].length + 2, 6)), m[2]));
        i++;
      } else if (isRule(line)) {
        out.append(el('hr'));
        i++;
      } else if (isUl(line) || isOl(line)) {
        const ordered = isOl(line);
        const list = el(ordered ? 'ol' : 'ul');
        while (i < lines.length && (ordered ? isOl(lines[i]) : isUl(lines[i]))) {
          list.append(inline(el('li'), lines[i].replace(ordered ? /^\s*\d+[.)]\s+/ : /^\s*[-*+]\s+/, '')));
          i++;
        }
        out.append(list);
      } else if (isQuote(line)) {
        const buf = [];
        while (i < lines.length && isQuote(lines[i])) buf.push(lines[i++].replace(/^\s*>\s?/, ''));
        out.append(inline(el('blockquote'), buf.join('\n')));
      } else if (!line.trim()) {
        i++;
      } else {
        const buf = [line];
        i++;
        while (i < lines.length && lines[i].trim() && !isFence(lines[i]) && !isHeading(lines[i]) && !isUl(lines[i]) && !isOl(lines[i]) && !isQuote(lines[i])) buf.push(lines[i++]);
        out.append(inline(el('p'), buf.join('\n')));
      }
    }
    return out;
  }

  function inline(parent, text) {
    // `_` emphasis only outside words (snake_case and __dunder__ names stay text).
    const re = /`([^`]+)`|\*\*([^*]+)\*\*|(?<!\w)__([^_]+)__(?!\w)|\*([^*\s][^*]*)\*|\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g;
    let last = 0;
    let m;
    while ((m = re.exec(text))) {
      if (m.index > last) parent.append(text.slice(last, m.index));
      if (m[1] != null) parent.append(el('code', null, m[1]));
      else if (m[2] != null || m[3] != null) parent.append(inline(el('strong'), m[2] ?? m[3]));
      else if (m[4] != null) parent.append(inline(el('em'), m[4]));
      else if (m[5] != null) parent.append(el('a', { href: m[6], rel: 'noopener noreferrer nofollow', target: '_blank' }, m[5]));
      last = re.lastIndex;
    }
    if (last < text.length) parent.append(text.slice(last));
    return parent;
  }

  // ---- config editor -----------------------------------------------------------------------
  let loadedText = null;
  const area = $('config-text');

  async function loadConfigOnce(force) {
    if (loadedText !== null && !force) return;
    const r = await api('/api/config');
    if (r.status !== 200) {
      $('config-result').replaceChildren(el('p', { class: 'error' }, (r.body && r.body.error && r.body.error.message) || 'cannot load the config'));
      return;
    }
    loadedText = r.body.text;
    area.value = r.body.text;
    area.readOnly = !r.body.writable;
    $('config-apply').disabled = !r.body.writable;
    $('config-path').textContent = r.body.path || '(no config file)';
    if (r.body.message) $('config-result').replaceChildren(el('p', { class: 'muted' }, r.body.message));
    markDirty();
  }

  function markDirty() {
    $('config-dirty').textContent = loadedText !== null && area.value !== loadedText ? 'unsaved changes' : '';
  }
  area.addEventListener('input', markDirty);

  /** Selects the line of the field a path like `routes[1].base_url` names (best effort). */
  function locate(path) {
    const parts = path.split('.').filter(Boolean);
    const lastPart = parts[parts.length - 1] || '';
    const name = lastPart.replace(/\[\d+\]$/, '');
    let nth = 0;
    for (const p of parts) { const m = p.match(/\[(\d+)\]$/); if (m) nth = Number(m[1]); }
    const re = new RegExp('^[\\s-]*' + name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '\\s*:', 'gm');
    let m;
    let k = 0;
    while ((m = re.exec(area.value))) {
      if (k++ === nth || parts.length === 1) {
        area.focus();
        area.setSelectionRange(m.index, area.value.indexOf('\n', m.index) >>> 0);
        return;
      }
    }
  }

  function showErrors(title, errors) {
    const list = el('ul', null, ...errors.map((e) => {
      const path = el('code', { title: 'show in the editor' }, e.path || '(file)');
      path.addEventListener('click', () => e.path && locate(e.path));
      return el('li', { class: 'field-error' }, path, ': ', e.message);
    }));
    $('config-result').replaceChildren(el('p', { class: 'error' }, title), list);
  }

  async function validate() {
    const r = await api('/api/config/validate', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ yaml: area.value }) });
    if (r.status !== 200) return showErrors('Validation failed', [{ path: '', message: (r.body && r.body.error && r.body.error.message) || String(r.status) }]);
    if (r.body.valid) $('config-result').replaceChildren(el('p', { class: 'ok', id: 'config-valid' }, '\u2713 Valid: every field checks out.'));
    else showErrors(r.body.errors.length + ' problem(s):', r.body.errors);
  }

  async function apply() {
    $('config-apply').disabled = true;
    $('config-result').replaceChildren(el('p', { class: 'muted' }, 'Writing and waiting for the gateway to reload…'));
    try {
      const r = await api('/api/config', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ yaml: area.value }) });
      const b = r.body || {};
      if (r.status === 422) return showErrors('Not written: ' + b.errors.length + ' problem(s):', b.errors);
      if (r.status !== 200) return showErrors('Not written', [{ path: '', message: (b.error && b.error.message) || String(r.status) }]);
      const out = [];
      if (b.applied === true) {
        out.push(el('p', { class: 'ok', id: 'config-applied' }, '\u2713 Applied at ' + b.at + (b.active_in_envoy
          ? '; Envoy loaded it: new connections use the new config (connections opened before finish on the previous one while Envoy drains them).'
          : '; Envoy has not confirmed loading it yet.')));
      }
      else if (b.applied === false) out.push(el('p', { class: 'error' }, 'Written, but the gateway refused it; the previous config stays:'), el('ul', null, ...b.messages.map((m) => el('li', null, m))));
      else out.push(el('p', { class: 'error' }, b.messages.join(' ')));
      if (b.backup) out.push(el('p', { class: 'muted' }, 'Backup: ', el('code', null, b.backup)));
      $('config-result').replaceChildren(...out);
      loadedText = area.value;
      markDirty();
    } finally {
      $('config-apply').disabled = false;
    }
  }

  const guard = (f) => () => f().catch((e) => { if (!(e instanceof Unauthorized)) $('config-result').replaceChildren(el('p', { class: 'error' }, e.message)); });
  $('config-validate').addEventListener('click', guard(validate));
  $('config-apply').addEventListener('click', guard(apply));
  $('config-reload').addEventListener('click', guard(() => loadConfigOnce(true)));

  // ---- start -------------------------------------------------------------------------------
  if (sessionStorage.getItem(TOKEN_KEY)) start();
  else showLogin('');
})();
