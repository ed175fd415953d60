// Overview: the period's KPIs against the previous period of the same
// length, clicks and revenue per day, the top links, recent alerts.

import { api, report } from './api.js';
import { barLineChart } from './chart.js';
import { el, fmt, range, rangeParams, rangeControls, addDays, daysBetween, go, errorBox } from './util.js';

const KPIS = [
  ['clicks', 'Clicks'],
  ['conversions', 'Conversions'],
  ['revenue', 'Revenue'],
  ['cost', 'Cost'],
  ['profit', 'Profit'],
  ['roi', 'ROI'],
  ['epc', 'EPC'],
];
const LOWER_IS_BETTER = new Set(['cost']);

function delta(metric, now, before) {
  if (now === null || before === null || now === undefined || before === undefined) return el('span', { class: 'delta' }, '–');
  if (before === 0) return el('span', { class: 'delta' }, now === 0 ? 'no change' : 'new');
  const change = (now - before) / Math.abs(before);
  const better = LOWER_IS_BETTER.has(metric) ? change < 0 : change > 0;
  const sign = change > 0 ? '+' : '';
  const cls = change === 0 ? 'delta' : better ? 'delta up' : 'delta down';
  return el('span', { class: cls }, `${sign}${(change * 100).toFixed(1)}%`);
}

function kpiCard(metric, label, now, before, days) {
  const v = now[metric];
  return el('div', { class: 'kpi', 'data-metric': metric, 'data-value': v === null || v === undefined ? '' : v },
    el('span', { class: 'kpi-label' }, label),
    el('span', { class: 'kpi-value' }, fmt(metric, v)),
    el('span', { class: 'kpi-compare' }, delta(metric, v, before[metric]), ` vs previous ${days} days (${fmt(metric, before[metric])})`));
}

// Every day of the range, zero where the report has no row.
function perDay(r, rows) {
  const by = new Map(rows.map((row) => [row.day, row]));
  const out = [];
  for (let d = r.from; d <= r.to; d = addDays(d, 1)) {
    const row = by.get(d) || {};
    out.push({ label: d, bars: row.clicks || 0, line: row.revenue || 0 });
  }
  return out;
}

export async function render(root, query, who) {
  const r = range(query);
  const days = daysBetween(r.from, r.to) + 1;
  const params = rangeParams(r);
  const previous = { from: addDays(r.from, -days), to: r.from, tz: r.tz };
  root.replaceChildren(
    el('h1', {}, 'Overview'),
    rangeControls(r, (next) => go('overview', next)),
    el('p', { class: 'loading' }, 'Loading…'));
  let now, before, daily, links, alerts;
  try {
    [now, before, daily, links, alerts] = await Promise.all([
      report(params),
      report(previous),
      report({ ...params, group_by: 'day', sort: 'day' }),
      report({ ...params, group_by: 'smartlink', limit: 10 }),
      who.role === 'admin' ? api('/api/v1/alerts?limit=10') : Promise.resolve(null),
    ]);
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const kpis = el('section', { class: 'kpis', 'aria-label': 'Key figures' },
    KPIS.map(([m, label]) => kpiCard(m, label, now.totals, before.totals, days)));
  const points = perDay(r, daily.rows);
  const chart = barLineChart(points, { bars: 'clicks', line: 'revenue' },
    { bars: (v) => fmt('clicks', v), line: (v) => fmt('revenue', v) },
    `Clicks and revenue per day, ${r.from} to ${r.to} (${r.tz})`);
  const dayTable = el('details', {},
    el('summary', {}, 'Per-day numbers'),
    el('table', {},
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Day'), el('th', { scope: 'col' }, 'Clicks'), el('th', { scope: 'col' }, 'Revenue'))),
      el('tbody', {}, points.map((p) => el('tr', {}, el('th', { scope: 'row' }, p.label), el('td', {}, fmt('clicks', p.bars)), el('td', {}, fmt('revenue', p.line)))))));
  const linkRows = links.rows.map((row) => el('tr', {},
    el('th', { scope: 'row' }, el('a', { href: `#/breakdowns?${new URLSearchParams({ ...r, group_by: 'offer', 'f.smartlink': row.smartlink })}` }, row.smartlink)),
    ['clicks', 'conversions', 'revenue', 'epc'].map((c) => el('td', { class: 'num' }, fmt(c, row[c])))));
  const topLinks = el('section', { 'aria-labelledby': 'links-title' },
    el('h2', { id: 'links-title' }, 'Links'),
    linkRows.length
      ? el('div', { class: 'scroll' }, el('table', {},
        el('thead', {}, el('tr', {}, ['Link', 'Clicks', 'Conversions', 'Revenue', 'EPC'].map((h, i) => el('th', { scope: 'col', class: i ? 'num' : null }, h)))),
        el('tbody', {}, linkRows)))
      : el('p', { class: 'muted' }, 'No clicks in this period.'));
  const parts = [kpis, el('section', { class: 'card', 'aria-label': 'Clicks and revenue per day' }, chart, dayTable), topLinks];
  if (alerts) {
    parts.push(el('section', { 'aria-labelledby': 'alerts-title' },
      el('h2', { id: 'alerts-title' }, 'Recent alerts'),
      alerts.alerts.length
        ? el('ul', { class: 'alerts' }, alerts.alerts.map((a) => el('li', {},
          el('time', { datetime: new Date(a.time_ms).toISOString() }, new Date(a.time_ms).toLocaleString()), ' ',
          el('strong', {}, a.smartlink), a.offer ? ` · ${a.offer}` : '', ': ', a.message)))
        : el('p', { class: 'muted' }, 'No alerts.')));
  }
  if (now.excluded && now.excluded.clicks) {
    parts.push(el('p', { class: 'muted' }, `${fmt('clicks', now.excluded.clicks)} bot and preview clicks are left out of every figure.`));
  }
  root.lastChild.replaceWith(...parts);
}
