// logstats dashboard: plain JS, no dependencies. Talks only to the same-origin API.
'use strict';

const KEY_STORAGE = 'logstats_api_key';
const SVG_NS = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

// ---------- formatting ----------
const fmtInt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const fmt2 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const fmt3 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 3, maximumFractionDigits: 3 });
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const fmt = {
  int: (v) => (isNum(v) ? fmtInt.format(v) : '–'),
  pct: (v) => (isNum(v) ? fmt2.format(v) : '–'),
  sec: (v) => (isNum(v) ? fmt3.format(v) : '–'),
};

// ---------- UTC date helpers (all dates are YYYY-MM-DD strings) ----------
const DAY_MS = 86400000;
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
function dayNum(ymd) {
  const [y, m, d] = ymd.split('-').map(Number);
  return Date.UTC(y, m - 1, d) / DAY_MS;
}
const ymdOf = (n) => new Date(n * DAY_MS).toISOString().slice(0, 10);
const addDays = (ymd, n) => ymdOf(dayNum(ymd) + n);
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
function shortDate(ymd, withYear) {
  const [y, m, d] = ymd.split('-').map(Number);
  return `${MONTHS[m - 1]} ${d}` + (withYear ? ` '${String(y).slice(2)}` : '');
}

// ---------- table columns ----------
const COLUMNS = [
  ['date', 'Date', (v) => v],
  ['total_requests', 'Total', fmt.int],
  ['success_requests', 'Success', fmt.int],
  ['failed_requests', 'Failed', fmt.int],
  ['status_1xx', '1xx', fmt.int],
  ['status_2xx', '2xx', fmt.int],
  ['status_3xx', '3xx', fmt.int],
  ['status_4xx', '4xx', fmt.int],
  ['status_5xx', '5xx', fmt.int],
  ['uptime_percentage', 'Uptime %', fmt.pct],
  ['availability_percentage', 'Avail. %', fmt.pct],
  ['duration_mean', 'Mean s', fmt.sec],
  ['duration_p50', 'p50 s', fmt.sec],
  ['duration_p90', 'p90 s', fmt.sec],
  ['duration_p95', 'p95 s', fmt.sec],
  ['duration_p99', 'p99 s', fmt.sec],
  ['duration_max', 'Max s', fmt.sec],
];

// The range by resource: the share of failures is the resource's part of all the range's failed
// requests; the failure rate, the part of its own requests that failed.
const RESOURCE_COLUMNS = [
  ['resource', 'Resource', (v) => (v == null ? '(not broken down)' : v)],
  ['total_requests', 'Total', fmt.int],
  ['failed_requests', 'Failed', fmt.int],
  ['failure_rate', 'Failure rate %', fmt.pct],
  ['failure_share', 'Share of failures %', fmt.pct],
  ['status_5xx', '5xx', fmt.int],
  ['availability_percentage', 'Avail. %', fmt.pct],
  ['uptime_percentage', 'Uptime %', fmt.pct],
  ['duration_p50', 'p50 s', fmt.sec],
  ['duration_p99', 'p99 s', fmt.sec],
];

const COLORS = {
  ok: '#2f9e44', c4xx: '#f59f00', c5xx: '#e03131', other: '#868e96',
  mean: '#1c7ed6', p50: '#f76707', p99: '#ae3ec9',
  uptime: '#1c7ed6', availability: '#2f9e44',
};

// The SLA panel's objective when none is given (the API's default too).
const DEFAULT_OBJECTIVE = '99.9';

// ---------- state ----------
const state = {
  customers: new Map(),
  customer: '',
  from: '',
  to: '',
  rows: [],
  sort: { field: 'date', dir: 1 },
  resources: [],
  resourceSort: { field: 'total_requests', dir: -1 },
  loadSeq: 0,
  slaMonth: '', // YYYY-MM
  slaObjective: DEFAULT_OBJECTIVE,
  slaSeq: 0,
};

// ---------- API ----------
class ApiError extends Error {
  constructor(status, text) {
    super(`${status}: ${text}`);
    this.status = status;
  }
}

let keyWaiter = null; // shared promise while the key form is shown

function askForKey(rejected) {
  if (!keyWaiter) {
    keyWaiter = new Promise((resolve) => {
      const form = $('auth-form');
      $('auth-text').textContent = rejected
        ? 'The API key was rejected. Enter a valid API key.'
        : 'This server requires an API key.';
      form.hidden = false;
      const waiting = document.body.dataset.state;
      document.body.dataset.state = 'auth';
      $('api-key').value = '';
      $('api-key').focus();
      form.onsubmit = (ev) => {
        ev.preventDefault();
        const key = $('api-key').value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY_STORAGE, key);
        form.hidden = true;
        document.body.dataset.state = waiting;
        keyWaiter = null;
        resolve();
      };
    });
  }
  return keyWaiter;
}

async function api(path) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_STORAGE);
    const headers = { Accept: 'application/json' };
    if (key) headers.Authorization = `Bearer ${key}`;
    let res;
    try {
      res = await fetch(path, { headers });
    } catch (e) {
      throw new ApiError('network error', 'the API could not be reached');
    }
    if (res.status === 401) {
      sessionStorage.removeItem(KEY_STORAGE);
      await askForKey(Boolean(key));
      continue;
    }
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) throw new ApiError(`${res.status} ${res.statusText}`.trim(), errorText(body));
    return body;
  }
}

function errorText(body) {
  if (!body || typeof body !== 'object') return 'unexpected response';
  let text = String(body.error || 'error');
  if (Array.isArray(body.detail) && body.detail.length) {
    const parts = body.detail.map((d) =>
      (Array.isArray(d.loc) ? d.loc.join('.') + ': ' : '') + (d.msg || ''));
    text += ' (' + parts.join('; ') + ')';
  } else if (typeof body.detail === 'string') {
    text += ' (' + body.detail + ')';
  } else if (typeof body.message === 'string') {
    text += ' (' + body.message + ')';
  }
  return text;
}

// ---------- messages ----------
function showMessage(kind, text) {
  const el = $('message');
  el.textContent = text;
  el.dataset.kind = kind;
  el.className = kind === 'empty' ? 'info' : 'error';
  el.hidden = false;
}
function clearMessage() {
  const el = $('message');
  el.hidden = true;
  el.textContent = '';
  delete el.dataset.kind;
}

// ---------- URL state ----------
function writeUrl() {
  const p = new URLSearchParams();
  if (state.customer) p.set('customer', state.customer);
  if (state.from) p.set('from', state.from);
  if (state.to) p.set('to', state.to);
  if (state.slaMonth) p.set('month', state.slaMonth);
  if (state.slaObjective !== DEFAULT_OBJECTIVE) p.set('objective', state.slaObjective);
  history.replaceState(null, '', `${location.pathname}?${p}`);
}

function defaultRange(c) {
  const to = c.last_day;
  return { from: addDays(to, -29), to };
}

// ---------- main flow ----------
async function init() {
  const params = new URLSearchParams(location.search);
  setLoading('Loading the customer list…');
  let first;
  try {
    first = await customersAfter('', CHOICES);
    if (params.get('customer')) await lookupCustomer(params.get('customer'));
  } catch (e) {
    return fail(e);
  }
  showChoices(first);
  if (!first.length && !params.get('customer')) {
    document.body.dataset.state = 'ready';
    return showMessage('empty', 'No customers have any data yet.');
  }
  state.customer = params.get('customer') || first[0].customer_id;
  state.from = params.get('from') || '';
  state.to = params.get('to') || '';
  state.slaMonth = params.get('month') || '';
  state.slaObjective = params.get('objective') || DEFAULT_OBJECTIVE;
  const c = findCustomer(state.customer);
  if (c) {
    const d = defaultRange(c);
    if (!state.from) state.from = d.from;
    if (!state.to) state.to = d.to;
    if (!state.slaMonth) state.slaMonth = c.last_day.slice(0, 7);
  }
  syncInputs();
  writeUrl();
  load();
}

// ---------- customers: a page at a time, never the whole list ----------
const CHOICES = 50;

// Every customer some page has shown, by id.
const findCustomer = (id) => state.customers.get(id);

// A page of at most `limit` customers whose ids come after `after` (remembered for findCustomer).
async function customersAfter(after, limit) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (after) q.set('after', after);
  const list = await api(`/customers?${q}`);
  const page = Array.isArray(list) ? list : [];
  for (const c of page) state.customers.set(c.customer_id, c);
  return page;
}

// Nearly the greatest string below `id` (its last character one lower, then the highest code
// point): a page after it begins with `id`, or with the first id above it.
function justBefore(id) {
  const chars = Array.from(id);
  let last = chars.pop().codePointAt(0) - 1;
  if (last >= 0xD800 && last <= 0xDFFF) last = 0xD7FF;
  return last < 0 ? chars.join('') : chars.join('') + String.fromCodePoint(last) + '\u{10FFFF}';
}

// The customer `id`, asked of the API when no page has shown it yet.
async function lookupCustomer(id) {
  if (!findCustomer(id) && id) await customersAfter(justBefore(id), 1);
  return findCustomer(id);
}

// The customers whose id starts with what was typed, for the picker.
async function searchCustomers(text) {
  const page = await customersAfter(text ? justBefore(text) : '', CHOICES);
  return page.filter((c) => c.customer_id.startsWith(text));
}

function showChoices(list) {
  $('customer-list').replaceChildren(...list.map((c) => {
    const o = document.createElement('option');
    o.value = c.customer_id;
    o.label = `${c.customer_id} · ${c.first_day} → ${c.last_day} · ${fmt.int(c.total_requests)} requests`;
    return o;
  }));
}

function syncInputs() {
  $('customer').value = state.customer;
  $('from').value = DATE_RE.test(state.from) ? state.from : '';
  $('to').value = DATE_RE.test(state.to) ? state.to : '';
}

// The page says what it waits for; whatever was shown last stays on screen (dimmed) meanwhile.
function setLoading(text) {
  document.body.dataset.state = 'loading';
  $('loading-text').textContent = text;
}

// A failed refresh keeps the last good data on screen and says which data that is.
function fail(err) {
  document.body.dataset.state = 'error';
  const text = err instanceof ApiError
    ? `API error ${err.message}`
    : `Unexpected error: ${err && err.message ? err.message : err}`;
  const shown = state.shown;
  if (shown && !$('content').hidden) {
    showMessage('api-error', `${text}. Still showing ${shown.customer}, ${shown.from} → ${shown.to}.`);
  } else {
    $('content').hidden = true;
    showMessage('api-error', text);
  }
}

async function load() {
  const seq = ++state.loadSeq;
  const { customer, from, to } = state;
  hideTooltip();
  try {
    await lookupCustomer(customer);
  } catch (e) {
    if (seq === state.loadSeq) fail(e);
    return;
  }
  if (seq !== state.loadSeq) return;
  if (!findCustomer(customer)) {
    document.body.dataset.state = 'ready';
    $('content').hidden = true;
    $('sla').hidden = true;
    return showMessage('unknown-customer', `Unknown customer "${customer}": no such customer in /customers.`);
  }
  loadSla();
  setLoading(`Loading ${customer}, ${from} → ${to}…`);
  const q = new URLSearchParams({ from, to });
  const base = `/customers/${encodeURIComponent(customer)}/stats`;
  let rows, summary, resources;
  try {
    [rows, summary, resources] = await Promise.all([
      api(`${base}?${q}`),
      api(`${base}/summary?${q}`),
      api(`${base}/summary?${q}&group_by=resource`),
    ]);
  } catch (e) {
    if (seq === state.loadSeq) fail(e);
    return;
  }
  if (seq !== state.loadSeq) return; // a newer request superseded this one
  state.rows = Array.isArray(rows) ? rows : [];
  state.resources = withFailureShares(Array.isArray(resources) ? resources : []);
  renderSummary(summary || {});
  if (!state.rows.length) {
    $('content').hidden = true;
    showMessage('empty', `No requests for ${customer} between ${from} and ${to}.`);
  } else {
    clearMessage();
    $('content').hidden = false;
    renderCharts();
    renderTable();
    renderResources();
    state.shown = { customer, from, to };
  }
  document.body.dataset.state = 'ready';
}

// ---------- summary ----------
function renderSummary(s) {
  $('sum-total').textContent = fmt.int(s.total_requests);
  const empty = !s.total_requests;
  $('sum-uptime').textContent = empty ? '–' : fmt.pct(s.uptime_percentage) + ' %';
  $('sum-availability').textContent = empty ? '–' : fmt.pct(s.availability_percentage) + ' %';
  $('sum-p50').textContent = empty ? '–' : fmt.sec(s.duration_p50) + ' s';
  $('sum-p99').textContent = empty ? '–' : fmt.sec(s.duration_p99) + ' s';
}

// ---------- monthly SLA ----------
// The selected customer's SLA for the panel's month and objective, asked of the API (which
// computes it from the month's counts); a newer request supersedes an older one.
async function loadSla() {
  const seq = ++state.slaSeq;
  const panel = $('sla');
  const { customer } = state;
  const month = state.slaMonth;
  const objective = state.slaObjective || DEFAULT_OBJECTIVE;
  panel.hidden = false;
  panel.dataset.state = 'loading';
  $('sla-month').value = month;
  $('sla-objective').value = objective;
  const q = new URLSearchParams({ month, objective });
  let sla;
  try {
    sla = await api(`/customers/${encodeURIComponent(customer)}/sla?${q}`);
  } catch (e) {
    if (seq !== state.slaSeq) return;
    panel.dataset.state = 'error';
    const m = $('sla-message');
    m.textContent = e instanceof ApiError ? `API error ${e.message}` : `Unexpected error: ${e && e.message ? e.message : e}`;
    m.hidden = false;
    return renderSla({});
  }
  if (seq !== state.slaSeq) return;
  $('sla-message').hidden = true;
  renderSla(sla || {});
  panel.dataset.state = 'ready';
}

function renderSla(s) {
  const none = !s.total_requests;
  const budget = s.error_budget_requests;
  $('sla-availability').textContent = none ? '–' : fmt.pct(s.availability_percentage) + ' %';
  $('sla-uptime').textContent = none ? '–' : fmt.pct(s.uptime_percentage) + ' %';
  $('sla-budget').textContent = isNum(budget) ? fmt.pct(budget) + ' requests' : '–';
  // The share of the budget the server's failures used (over 100 % once overspent).
  $('sla-used').textContent = isNum(budget) && budget > 0 ? fmt.pct((s.failed_by_server / budget) * 100) + ' %' : '–';
  $('sla-remaining').textContent = isNum(s.error_budget_remaining_requests)
    ? fmt.pct(s.error_budget_remaining_requests) + ' requests' : '–';
  const breached = $('sla-breached');
  breached.textContent = typeof s.breached === 'boolean' ? (s.breached ? 'Yes' : 'No') : '–';
  if (typeof s.breached === 'boolean') breached.dataset.breached = String(s.breached);
  else delete breached.dataset.breached;
  const worst = s.worst_day;
  $('sla-worst').textContent = worst ? `${worst.date} · ${fmt.pct(worst.availability_percentage)} %` : '–';
}

function onSlaChange() {
  const month = $('sla-month').value;
  const objective = $('sla-objective').value.trim() || DEFAULT_OBJECTIVE;
  if (!month) return; // wait for a complete month
  if (month === state.slaMonth && objective === state.slaObjective) return;
  state.slaMonth = month;
  state.slaObjective = objective;
  writeUrl();
  loadSla();
}

// ---------- SVG charts ----------
function el(name, attrs, parent) {
  const e = document.createElementNS(SVG_NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function niceStep(range, count) {
  const raw = range / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

function niceScale(lo, hi, count = 4) {
  if (!(hi > lo)) hi = lo + 1;
  const step = niceStep(hi - lo, count);
  const a = Math.floor(lo / step) * step;
  const b = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let t = a; t <= b + step / 2; t += step) ticks.push(+t.toFixed(10));
  return { lo: a, hi: b, ticks, step };
}

function legend(id, items) {
  $(id).replaceChildren(...items.map(([label, color]) => {
    const s = document.createElement('span');
    s.className = 'key';
    s.innerHTML = `<i style="background:${color}"></i>`;
    s.append(label);
    return s;
  }));
}

// Draws frame, axes and hover columns; returns helpers to place data.
function frame(container, { scale, yLabel, tickFmt }) {
  const W = Math.max(320, container.clientWidth);
  const H = 230;
  const m = { l: 60, r: 14, t: 10, b: 30 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const d0 = dayNum(state.from);
  const n = Math.max(1, dayNum(state.to) - d0 + 1);
  const band = pw / n;
  const x = (ymd) => m.l + (dayNum(ymd) - d0 + 0.5) * band;
  const y = (v) => m.t + ph - ((v - scale.lo) / (scale.hi - scale.lo)) * ph;

  const svg = el('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img' });
  const hover = el('g', { class: 'hover-layer' }, svg);
  const grid = el('g', { class: 'grid' }, svg);
  for (const t of scale.ticks) {
    el('line', { x1: m.l, x2: W - m.r, y1: y(t), y2: y(t) }, grid);
    el('text', { x: m.l - 6, y: y(t), class: 'tick y' }, grid).textContent = tickFmt(t);
  }
  el('text', { class: 'axis-label', transform: `translate(14 ${m.t + ph / 2}) rotate(-90)` }, svg)
    .textContent = yLabel;

  // x labels: at most one every ~70px
  const every = Math.max(1, Math.ceil(70 / band));
  const multiYear = state.from.slice(0, 4) !== state.to.slice(0, 4);
  const xa = el('g', { class: 'grid' }, svg);
  for (let i = 0; i < n; i += every) {
    const ymd = ymdOf(d0 + i);
    el('text', { x: x(ymd), y: H - 10, class: 'tick x' }, xa).textContent = shortDate(ymd, multiYear);
  }

  for (const r of state.rows) {
    el('rect', {
      class: 'hover-col', 'data-date': r.date,
      x: x(r.date) - band / 2, y: m.t, width: band, height: ph,
    }, hover);
  }
  container.replaceChildren(svg);
  return { svg, x, y, band, m, ph };
}

function lineChart(container, series, opts) {
  const f = frame(container, opts);
  for (const [field, color] of series) {
    let d = '';
    let prev = null;
    for (const r of state.rows) {
      const v = r[field];
      if (!isNum(v)) { prev = null; continue; }
      const gap = prev === null || dayNum(r.date) - dayNum(prev) > 1;
      d += `${gap ? 'M' : 'L'}${f.x(r.date).toFixed(1)},${f.y(v).toFixed(1)}`;
      prev = r.date;
    }
    el('path', { d, class: 'line', stroke: color }, f.svg);
    // dots on every day when there is room, otherwise only on isolated days (no segment to show them)
    state.rows.forEach((r, i) => {
      if (!isNum(r[field])) return;
      const near = (j) => state.rows[j] && isNum(state.rows[j][field]) &&
        Math.abs(dayNum(state.rows[j].date) - dayNum(r.date)) === 1;
      if (f.band >= 6 || (!near(i - 1) && !near(i + 1))) {
        el('circle', { cx: f.x(r.date), cy: f.y(r[field]), r: 2.5, fill: color, class: 'dot' }, f.svg);
      }
    });
  }
}

function renderCharts() {
  const rows = state.rows;
  const n = (v) => (isNum(v) ? v : 0);

  // 1. stacked request bars
  const maxTotal = Math.max(1, ...rows.map((r) => n(r.status_1xx) + n(r.status_2xx) + n(r.status_3xx) + n(r.status_4xx) + n(r.status_5xx)));
  const rs = niceScale(0, maxTotal);
  const f = frame($('chart-requests'), { scale: rs, yLabel: 'requests', tickFmt: fmt.int });
  const bw = Math.max(1, Math.min(f.band * 0.72, 48));
  for (const r of rows) {
    const g = el('g', { class: 'bar-day', 'data-date': r.date }, f.svg);
    let acc = 0;
    for (const [v, color] of [
      [n(r.status_2xx), COLORS.ok], [n(r.status_4xx), COLORS.c4xx],
      [n(r.status_5xx), COLORS.c5xx], [n(r.status_1xx) + n(r.status_3xx), COLORS.other],
    ]) {
      if (v <= 0) continue;
      const y1 = f.y(acc);
      const y2 = f.y(acc + v);
      el('rect', { x: f.x(r.date) - bw / 2, y: y2, width: bw, height: Math.max(0.5, y1 - y2), fill: color }, g);
      acc += v;
    }
  }
  legend('legend-requests', [['2xx (success)', COLORS.ok], ['4xx', COLORS.c4xx], ['5xx', COLORS.c5xx], ['other failed (1xx+3xx)', COLORS.other]]);

  // 2. latency lines
  const maxLat = Math.max(0.001, ...rows.flatMap((r) => [r.duration_mean, r.duration_p50, r.duration_p99].filter(isNum)));
  lineChart($('chart-latency'), [['duration_mean', COLORS.mean], ['duration_p50', COLORS.p50], ['duration_p99', COLORS.p99]], {
    scale: niceScale(0, maxLat), yLabel: 'seconds', tickFmt: (t) => fmt3.format(t),
  });
  legend('legend-latency', [['mean', COLORS.mean], ['p50', COLORS.p50], ['p99', COLORS.p99]]);

  // 3. uptime / availability lines
  const pv = rows.flatMap((r) => [r.uptime_percentage, r.availability_percentage].filter(isNum));
  const lo = pv.length ? Math.min(...pv) : 0;
  let ps = niceScale(Math.max(0, lo - 1), 100);
  if (ps.lo < 0) ps = niceScale(0, 100);
  lineChart($('chart-uptime'), [['uptime_percentage', COLORS.uptime], ['availability_percentage', COLORS.availability]], {
    scale: ps, yLabel: 'percent', tickFmt: (t) => fmt2.format(t).replace(/\.00$/, '') + '%',
  });
  legend('legend-uptime', [['uptime', COLORS.uptime], ['availability', COLORS.availability]]);
}

// ---------- tooltip ----------
function showTooltip(date, ev) {
  const r = state.rows.find((x) => x.date === date);
  if (!r) return hideTooltip();
  const tip = $('tooltip');
  const other = (r.status_1xx || 0) + (r.status_3xx || 0);
  const line = (k, v) => `<tr><th>${k}</th><td>${v}</td></tr>`;
  tip.innerHTML = `<div class="tip-date">${r.date}</div><table>` +
    line('Total', fmt.int(r.total_requests)) +
    line('2xx', fmt.int(r.status_2xx)) + line('4xx', fmt.int(r.status_4xx)) +
    line('5xx', fmt.int(r.status_5xx)) + line('Other failed', fmt.int(other)) +
    line('Uptime', fmt.pct(r.uptime_percentage) + ' %') +
    line('Availability', fmt.pct(r.availability_percentage) + ' %') +
    line('Mean', fmt.sec(r.duration_mean) + ' s') + line('p50', fmt.sec(r.duration_p50) + ' s') +
    line('p99', fmt.sec(r.duration_p99) + ' s') + '</table>';
  tip.hidden = false;
  const pad = 14;
  const { width, height } = tip.getBoundingClientRect();
  let left = ev.clientX + pad;
  let top = ev.clientY + pad;
  if (left + width > window.innerWidth - 4) left = ev.clientX - width - pad;
  if (top + height > window.innerHeight - 4) top = ev.clientY - height - pad;
  tip.style.left = `${Math.max(4, left)}px`;
  tip.style.top = `${Math.max(4, top)}px`;
  for (const c of document.querySelectorAll('.hover-col')) c.classList.toggle('active', c.dataset.date === date);
}

function hideTooltip() {
  $('tooltip').hidden = true;
  for (const c of document.querySelectorAll('.hover-col.active')) c.classList.remove('active');
}

// ---------- tables ----------
// Fills table `id` with `rows` under `columns`, its headers sortable (the sorted one marked);
// `key` names the field each row is known by (a data attribute of its row).
function renderSortable(id, columns, rows, sort, key) {
  const head = document.querySelector(`#${id} thead tr`);
  head.replaceChildren(...columns.map(([f, label]) => {
    const th = document.createElement('th');
    th.scope = 'col';
    th.dataset.sort = f;
    th.tabIndex = 0;
    th.textContent = label;
    th.setAttribute('aria-sort', f === sort.field ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    return th;
  }));
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset[key] = r[key] ?? '';
    for (const [f, , format] of columns) {
      const td = document.createElement('td');
      td.dataset.field = f;
      td.textContent = format(r[f]);
      tr.appendChild(td);
    }
    return tr;
  }));
}

// `rows` sorted by `sort`, ties by `key` ascending (a missing value sorts first).
function sorted(rows, sort, key) {
  const { field, dir } = sort;
  const order = (x, y) => (x === y ? 0 : x == null ? -1 : y == null ? 1 : x < y ? -1 : 1);
  return rows.slice().sort((a, b) => order(a[field], b[field]) * dir || order(a[key], b[key]));
}

// Clicking (or Enter/Space on) a header of table `id` sorts by its column with `sortBy`.
function sortableHeaders(id, sortBy) {
  const head = document.querySelector(`#${id} thead`);
  head.addEventListener('click', (e) => {
    const th = e.target.closest('th[data-sort]');
    if (th) sortBy(th.dataset.sort);
  });
  head.addEventListener('keydown', (e) => {
    const th = e.target.closest('th[data-sort]');
    if (th && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); sortBy(th.dataset.sort); }
  });
}

const toggled = (sort, f) => (sort.field === f ? { field: f, dir: -sort.dir } : { field: f, dir: 1 });

function renderTable() {
  renderSortable('days', COLUMNS, sortedRows(), state.sort, 'date');
  $('download-csv').disabled = !state.rows.length;
}

function sortedRows() {
  return sorted(state.rows, state.sort, 'date');
}

function sortBy(f) {
  state.sort = toggled(state.sort, f);
  renderTable();
}

// ---------- by resource ----------
function withFailureShares(resources) {
  const failed = resources.reduce((sum, r) => sum + r.failed_requests, 0);
  return resources.map((r) => ({
    ...r,
    failure_rate: r.total_requests ? (100 * r.failed_requests) / r.total_requests : 0,
    failure_share: failed ? (100 * r.failed_requests) / failed : 0,
  }));
}

function renderResources() {
  const rows = sorted(state.resources, state.resourceSort, 'resource');
  renderSortable('resources', RESOURCE_COLUMNS, rows, state.resourceSort, 'resource');
  $('resources-card').hidden = !state.resources.length;
}

function sortResourcesBy(f) {
  state.resourceSort = toggled(state.resourceSort, f);
  renderResources();
}

// A CSV cell. Text that a spreadsheet would run as a formula (it starts with =, +, -, @, a tab or
// a carriage return) gets a leading apostrophe and quotes, as OWASP's CSV injection guidance says;
// text with quotes, commas or line breaks is quoted.
function csvCell(v) {
  if (v == null) return '';
  if (typeof v !== 'string') return String(v);
  const text = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return text !== v || /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// The table as CSV, in the table's order.
function csvText() {
  const fields = COLUMNS.map((c) => c[0]);
  const lines = [['customer_id', ...fields].join(',')];
  for (const r of sortedRows()) lines.push([state.customer, ...fields.map((f) => r[f])].map(csvCell).join(','));
  return lines.join('\n') + '\n';
}

function downloadCsv() {
  const csv = csvText();
  const url = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `${state.customer}_${state.from}_${state.to}.csv`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---------- events ----------
async function onCustomerChange() {
  const id = $('customer').value.trim();
  if (!id || id === state.customer) return;
  state.customer = id;
  const c = await lookupCustomer(id).catch(() => undefined);
  if (id !== state.customer) return; // another choice came meanwhile
  if (c) Object.assign(state, defaultRange(c), { slaMonth: c.last_day.slice(0, 7) });
  state.sort = { field: 'date', dir: 1 };
  syncInputs();
  writeUrl();
  load();
}

function onDateChange() {
  const from = $('from').value;
  const to = $('to').value;
  if (!from || !to) return; // wait for a complete date
  if (from === state.from && to === state.to) return;
  state.from = from;
  state.to = to;
  writeUrl();
  load();
}

document.addEventListener('DOMContentLoaded', () => {
  $('controls').addEventListener('submit', (e) => e.preventDefault());
  $('customer').addEventListener('change', onCustomerChange);
  let typing = 0;
  let searched = '';
  $('customer').addEventListener('input', () => {
    const text = $('customer').value.trim();
    if (findCustomer(text)) onCustomerChange(); // picking a datalist entry: switch at once
    clearTimeout(typing);
    typing = setTimeout(async () => { // typing searches the API, a page at a time
      searched = text;
      const found = await searchCustomers(text).catch(() => null);
      if (found && searched === text) showChoices(found);
    }, 200);
  });
  $('from').addEventListener('change', onDateChange);
  $('to').addEventListener('change', onDateChange);
  $('download-csv').addEventListener('click', downloadCsv);
  $('sla-controls').addEventListener('submit', (e) => e.preventDefault());
  $('sla-month').addEventListener('change', onSlaChange);
  $('sla-objective').addEventListener('change', onSlaChange);

  sortableHeaders('days', sortBy);
  sortableHeaders('resources', sortResourcesBy);

  const charts = $('charts');
  charts.addEventListener('mousemove', (e) => {
    const t = e.target.closest('[data-date]');
    if (t) showTooltip(t.dataset.date, e); else hideTooltip();
  });
  charts.addEventListener('mouseleave', hideTooltip);

  let width = 0;
  let timer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const w = charts.clientWidth;
      if (w !== width && state.rows.length && !$('content').hidden) { width = w; renderCharts(); }
    }, 150);
  });

  init();
});
