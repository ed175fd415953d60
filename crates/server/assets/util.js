// Small helpers: a DOM builder (text only, never HTML strings), number
// formats, dates in a time zone, and the view state kept in the URL hash.

import { api } from './api.js';

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const money = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const precise = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 4 });
const percent = new Intl.NumberFormat('en-US', { style: 'percent', maximumFractionDigits: 1 });

// How each report column is shown.
export const COLUMNS = {
  clicks: { label: 'Clicks', fmt: (v) => integer.format(v) },
  conversions: { label: 'Conversions', fmt: (v) => integer.format(v) },
  cr: { label: 'CR', fmt: (v) => percent.format(v) },
  revenue: { label: 'Revenue', fmt: (v) => money.format(v) },
  cost: { label: 'Cost', fmt: (v) => money.format(v) },
  profit: { label: 'Profit', fmt: (v) => money.format(v) },
  roi: { label: 'ROI', fmt: (v) => percent.format(v) },
  epc: { label: 'EPC', fmt: (v) => precise.format(v) },
};

export function fmt(column, v) {
  if (v === null || v === undefined) return '–';
  const c = COLUMNS[column];
  return c ? c.fmt(v) : String(v);
}

// The report API's dimensions (GET /api/v1/report, group_by).
export const DIMENSIONS = [
  'smartlink', 'offer', 'affiliate', 'source', 'country', 'device', 'os', 'browser', 'language',
  'quality', 'reason', 'day', 'hour', 'weekday', 'sub1', 'sub2', 'sub3', 'sub4', 'sub5',
];
// The dimensions a report can be filtered by.
export const FILTERS = [
  'smartlink', 'offer', 'affiliate', 'source', 'country', 'device', 'os', 'browser', 'language',
  'quality', 'reason', 'sub1', 'sub2', 'sub3', 'sub4', 'sub5',
];

// --- dates: YYYY-MM-DD strings, "today" in a time zone ---

export function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

export function zones() {
  try {
    const z = Intl.supportedValuesOf('timeZone');
    return z.includes('UTC') ? z : ['UTC', ...z];
  } catch {
    return ['UTC'];
  }
}

export function today(tz) {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' })
    .formatToParts(new Date());
  const get = (t) => parts.find((p) => p.type === t).value;
  return `${get('year')}-${get('month')}-${get('day')}`;
}

export function addDays(date, n) {
  const d = new Date(date + 'T00:00:00Z');
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

export function daysBetween(from, to) {
  return Math.round((Date.parse(to + 'T00:00:00Z') - Date.parse(from + 'T00:00:00Z')) / 86400000);
}

export function validDate(s) {
  return /^\d{4}-\d{2}-\d{2}$/.test(s || '') && !Number.isNaN(Date.parse(s + 'T00:00:00Z'));
}

// The range a view shows: `from` and `to` inclusive dates in `tz`.
// Default: the last 7 days, today included.
export function range(q) {
  const tz = q.get('tz') || browserZone();
  let to = validDate(q.get('to')) ? q.get('to') : today(tz);
  let from = validDate(q.get('from')) ? q.get('from') : addDays(to, -6);
  if (from > to) [from, to] = [to, from];
  return { from, to, tz };
}

// The report API's parameters for an inclusive date range (its `to` is
// exclusive: midnight after the last day).
export function rangeParams({ from, to, tz }) {
  return { from, to: addDays(to, 1), tz };
}

// --- the view's state in the URL hash: #/page?key=value ---

export function parseHash() {
  const h = location.hash.startsWith('#/') ? location.hash.slice(2) : 'overview';
  const [page, query] = h.split('?');
  return { page: page || 'overview', query: new URLSearchParams(query || '') };
}

export function go(page, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  location.hash = `#/${page}${s ? '?' + s : ''}`;
}

// The date range and time zone controls shared by the pages.
export function rangeControls(r, onChange) {
  const from = el('input', { type: 'date', id: 'range-from', value: r.from, max: r.to });
  const to = el('input', { type: 'date', id: 'range-to', value: r.to, min: r.from });
  const tz = el('select', { id: 'range-tz' }, zones().map((z) => el('option', { value: z, selected: z === r.tz }, z)));
  if (!zones().includes(r.tz)) tz.append(el('option', { value: r.tz, selected: true }, r.tz));
  const changed = () => {
    if (validDate(from.value) && validDate(to.value)) onChange({ from: from.value, to: to.value, tz: tz.value });
  };
  from.addEventListener('change', changed);
  to.addEventListener('change', changed);
  tz.addEventListener('change', changed);
  const preset = (days) => el('button', {
    type: 'button', class: 'quiet',
    onclick: () => {
      const end = today(tz.value);
      onChange({ from: addDays(end, -(days - 1)), to: end, tz: tz.value });
    },
  }, days === 1 ? 'Today' : `${days} days`);
  return el('div', { class: 'controls', role: 'group', 'aria-label': 'Date range' },
    el('label', { for: 'range-from' }, 'From'), from,
    el('label', { for: 'range-to' }, 'To'), to,
    el('label', { for: 'range-tz' }, 'Time zone'), tz,
    el('span', { class: 'presets' }, preset(1), preset(7), preset(30)));
}

export function errorBox(e) {
  return el('p', { class: 'error', role: 'alert' }, e instanceof Error ? e.message : String(e));
}

// --- instants in a time zone ---

function zoneOffsetMs(ms, tz) {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(new Date(ms));
  const g = (t) => Number(parts.find((p) => p.type === t).value);
  return Date.UTC(g('year'), g('month') - 1, g('day'), g('hour'), g('minute'), g('second')) - Math.floor(ms / 1000) * 1000;
}

// Epoch milliseconds of 00:00 on `date` (YYYY-MM-DD) in `tz`.
export function zonedMidnight(date, tz) {
  const [y, m, d] = date.split('-').map(Number);
  const wall = Date.UTC(y, m - 1, d);
  const first = wall - zoneOffsetMs(wall, tz);
  return wall - zoneOffsetMs(first, tz);
}

// The local date (YYYY-MM-DD) of an instant in `tz`, and how far into
// that day it is (0..1).
export function localDay(ms, tz) {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
  }).formatToParts(new Date(ms));
  const g = (t) => parts.find((p) => p.type === t).value;
  return { day: `${g('year')}-${g('month')}-${g('day')}`, frac: (Number(g('hour')) * 60 + Number(g('minute'))) / 1440 };
}

// `2026-12-01 14:05` in `tz`.
export function fmtTime(ms, tz) {
  if (ms === null || ms === undefined) return '–';
  const { day } = localDay(ms, tz);
  const t = new Intl.DateTimeFormat('en-GB', { timeZone: tz, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(new Date(ms));
  return `${day} ${t}`;
}

// --- shared page parts ---

// A table: `head` is a list of column names (a name ending in '#' is a
// number column: right-aligned, the '#' dropped); `rows` are lists of
// cells (text or nodes); each row's first cell is its header.
// The box scrolls sideways on a narrow screen, so it can take the focus
// (keyboard users scroll it too); `attrs.label` names it when there is no
// caption.
export function table(caption, head, rows, attrs = {}) {
  const num = head.map((h) => h.endsWith('#'));
  const { label, ...rest } = attrs;
  return el('div', { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': caption || label || 'Table' }, el('table', rest,
    caption ? el('caption', {}, caption) : null,
    el('thead', {}, el('tr', {}, head.map((h, i) => el('th', { scope: 'col', class: num[i] ? 'num' : null }, num[i] ? h.slice(0, -1) : h)))),
    el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c, i) => el(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row' } : { class: num[i] ? 'num' : null }, c)))))));
}

// The smartlink picker of the per-smartlink pages.
export function smartlinkPicker(links, current, onChange) {
  const sel = el('select', { id: 'smartlink', onchange: (e) => onChange(e.target.value) },
    links.map((l) => el('option', { value: l.slug, selected: l.slug === current }, l.slug)));
  return [el('label', { for: 'smartlink' }, 'Smartlink'), sel];
}

// Admin-only pages say so to an affiliate session (the API would answer
// 403 anyway).
export function adminOnly(root, who, title) {
  if (who.role === 'admin') return false;
  root.replaceChildren(el('h1', {}, title), el('p', { class: 'muted' }, 'This page is for the admin.'));
  return true;
}

export function loading() {
  return el('p', { class: 'loading' }, 'Loading…');
}

const PERIODS = [['1d', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days']];

// The period control of the analyses that take `period` (1, 7 or 30 days).
export function periodPicker(current, onChange) {
  const sel = el('select', { id: 'period', onchange: (e) => onChange(e.target.value) },
    PERIODS.map(([v, t]) => el('option', { value: v, selected: v === current }, t)));
  return [el('label', { for: 'period' }, 'Period'), sel];
}

// The view's period if it is one of the picker's, else 7 days.
export function periodOf(query) {
  return PERIODS.some(([v]) => v === query.get('period')) ? query.get('period') : '7d';
}

// The start of every per-smartlink page: shows `title` while the
// smartlinks load, then returns them with the one the view names (else the
// first), or null once it has said why there is nothing to show.
export async function pickSmartlink(root, title, query) {
  root.replaceChildren(title, loading());
  let links;
  try {
    links = await api('/api/v1/smartlinks');
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return null;
  }
  if (!links.length) {
    root.lastChild.replaceWith(el('p', { class: 'muted' }, 'No smartlinks yet.'));
    return null;
  }
  const slug = links.some((l) => l.slug === query.get('smartlink')) ? query.get('smartlink') : links[0].slug;
  return { links, slug, link: links.find((l) => l.slug === slug) };
}
