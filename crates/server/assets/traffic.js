// Where the traffic went, per smartlink: each offer's share of the
// clicks per day (stacked bars) and its EPC per day (lines), with the
// offers' pauses, cap hits and payout changes as numbered event lines;
// the router's current policy for the busiest segments (admin). Every
// number is also in a table.

import { api, report } from './api.js';
import { stackedShareChart, lineChart, legendList, PALETTE, FALLBACK_COLOUR } from './chart.js';
import {
  el, fmt, range, rangeParams, rangeControls, addDays, go, errorBox, table, smartlinkPicker, pickSmartlink,
  zonedMidnight, localDay, fmtTime, loading,
} from './util.js';
import { offerEvents } from './events.js';

const NS = 'http://www.w3.org/2000/svg';
const pct = (v) => `${(v * 100).toFixed(1)}%`;

// A small bar for a probability (the number is beside it as text).
function probBar(p) {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 100 10');
  svg.setAttribute('class', 'prob');
  svg.setAttribute('aria-hidden', 'true');
  const bg = document.createElementNS(NS, 'rect');
  bg.setAttribute('width', '100');
  bg.setAttribute('height', '10');
  bg.setAttribute('class', 'prob-bg');
  const fg = document.createElementNS(NS, 'rect');
  fg.setAttribute('width', String(Math.max(0, Math.min(1, p)) * 100));
  fg.setAttribute('height', '10');
  fg.setAttribute('class', 'prob-fg');
  svg.append(bg, fg);
  return svg;
}

function policySection(policy) {
  const parts = [el('h2', { id: 'policy-title' }, 'The router\'s current policy')];
  parts.push(el('p', { class: 'muted' },
    `Strategy ${policy.strategy}. For the busiest segments of the period: the offer a click would go to now, with its probability `
    + '(eligibility, overrides and caps as of now; browser and language are the segment\'s most common).'));
  if (!policy.segments.length) parts.push(el('p', { class: 'muted' }, 'No clicks yet: no segment to show.'));
  for (const seg of policy.segments) {
    const s = seg.segment;
    const name = `${s.country}/${s.device}/${s.os}`;
    const decided = seg.decided_by === 'fallback' ? `fallback (${seg.fallback_reason})` : seg.decided_by;
    const rows = seg.offers.map((o) => [o.offer, el('span', { 'data-probability': o.probability }, pct(o.probability)), probBar(o.probability), o.best ? 'preferred' : '']);
    parts.push(el('section', { class: 'segment', 'data-segment': name, 'aria-label': `Policy for ${name}` },
      el('h3', {}, `${name} · ${s.browser}${s.language ? ' · ' + s.language : ''}`),
      el('p', { class: 'muted' }, `${fmt('clicks', seg.clicks)} clicks in the period; decided by ${decided}.`),
      rows.length ? table(null, ['Offer', 'Probability#', 'Share', 'Router'], rows, { class: 'policy', label: `Policy for ${name}` }) : null));
  }
  return el('section', { 'aria-labelledby': 'policy-title' }, parts);
}

export async function render(root, query, who) {
  const r = range(query);
  const title = el('h1', {}, 'Where the traffic went');
  const picked = await pickSmartlink(root, title, query);
  if (!picked) return;
  const { links, slug, link } = picked;
  const st = { from: r.from, to: r.to, tz: r.tz, smartlink: slug };
  const nav = (next) => go('traffic', { ...st, ...next });
  root.replaceChildren(title,
    el('div', { class: 'controls' }, smartlinkPicker(links, slug, (v) => nav({ smartlink: v }))),
    rangeControls(r, nav),
    loading());
  const admin = who.role === 'admin';
  const days = [];
  for (let d = r.from; d <= r.to; d = addDays(d, 1)) days.push(d);
  const fromMs = zonedMidnight(r.from, r.tz);
  const toMs = zonedMidnight(addDays(r.to, 1), r.tz);
  let daily, events, policy;
  try {
    [daily, events, policy] = await Promise.all([
      report({ ...rangeParams(r), smartlink: slug, group_by: 'day,offer', sort: 'day' }),
      admin ? offerEvents(link.offers || [], fromMs, toMs) : Promise.resolve([]),
      admin ? api(`/api/v1/policy?smartlink=${encodeURIComponent(slug)}&limit=5`) : Promise.resolve(null),
    ]);
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }

  // Offers by clicks in the period, the fallback last.
  const totals = new Map();
  const perDay = new Map(days.map((d) => [d, 0]));
  const cell = new Map();
  for (const row of daily.rows) {
    const offer = row.offer === null || row.offer === undefined ? null : String(row.offer);
    totals.set(offer, (totals.get(offer) || 0) + row.clicks);
    perDay.set(row.day, (perDay.get(row.day) || 0) + row.clicks);
    cell.set(`${row.day}|${offer}`, row);
  }
  const offers = [...totals.keys()].filter((o) => o !== null).sort((a, b) => totals.get(b) - totals.get(a) || a.localeCompare(b));
  if (totals.has(null)) offers.push(null);
  const name = (o) => (o === null ? 'fallback' : o);
  const series = offers.map((o, i) => ({ offer: o, name: name(o), colour: o === null ? FALLBACK_COLOUR : PALETTE[i % PALETTE.length] }));

  const dayIndex = new Map(days.map((d, i) => [d, i]));
  const marks = events.map((ev) => {
    const { day, frac } = localDay(ev.time_ms, r.tz);
    return { at: dayIndex.has(day) ? dayIndex.get(day) + frac : null, label: `${fmtTime(ev.time_ms, r.tz)} ${ev.offer} ${ev.what}` };
  });

  const parts = [];
  if (!daily.rows.length) {
    parts.push(el('p', { class: 'muted' }, 'No clicks on this smartlink in this period.'));
  } else {
    const shares = series.map((se) => ({ ...se, values: days.map((d) => (perDay.get(d) ? ((cell.get(`${d}|${se.offer}`) || {}).clicks || 0) / perDay.get(d) : 0)) }));
    const epcs = series.filter((se) => se.offer !== null).map((se) => ({ ...se, values: days.map((d) => { const c = cell.get(`${d}|${se.offer}`); return c && c.clicks ? c.epc : null; }) }));
    const shareRows = days.map((d) => [d,
      ...series.map((se) => {
        const c = cell.get(`${d}|${se.offer}`);
        const n = c ? c.clicks : 0;
        return el('span', { 'data-day': d, 'data-offer': name(se.offer), 'data-clicks': n }, perDay.get(d) ? `${fmt('clicks', n)} (${pct(n / perDay.get(d))})` : '–');
      }),
      el('span', { 'data-day-total': d }, fmt('clicks', perDay.get(d) || 0))]);
    const epcRows = days.map((d) => [d, ...series.filter((se) => se.offer !== null).map((se) => {
      const c = cell.get(`${d}|${se.offer}`);
      return c && c.clicks ? el('span', { 'data-day': d, 'data-offer': se.offer, 'data-epc': c.epc }, fmt('epc', c.epc)) : '–';
    })]);
    parts.push(
      el('section', { class: 'card', 'aria-labelledby': 'share-title' },
        el('h2', { id: 'share-title' }, 'Each offer\'s share of the clicks per day'),
        stackedShareChart(days, shares, marks, `Share of ${slug}'s clicks per offer per day, ${r.from} to ${r.to} (${r.tz})`),
        legendList(shares),
        el('details', {}, el('summary', {}, 'Clicks per offer and day'),
          table(`Clicks per offer and day (share of the day's clicks), ${r.tz}`, ['Day', ...series.map((se) => se.name + '#'), 'All#'], shareRows, { id: 'share-table' }))),
      el('section', { class: 'card', 'aria-labelledby': 'epc-title' },
        el('h2', { id: 'epc-title' }, 'EPC per offer per day'),
        lineChart(days, epcs, marks, `EPC per offer per day on ${slug}, ${r.from} to ${r.to} (${r.tz})`, (v) => fmt('epc', v)),
        legendList(epcs),
        el('details', {}, el('summary', {}, 'EPC per offer and day'),
          table(`EPC per offer and day, ${r.tz} (– no clicks)`, ['Day', ...series.filter((se) => se.offer !== null).map((se) => se.name + '#')], epcRows, { id: 'epc-table' }))));
  }
  if (admin) {
    parts.push(el('section', { 'aria-labelledby': 'events-title' },
      el('h2', { id: 'events-title' }, 'Events'),
      marks.length
        ? el('ol', { class: 'events', id: 'events' }, marks.map((m) => el('li', {}, m.label)))
        : el('p', { class: 'muted' }, 'No pause, cap or payout change of these offers in this period.')));
    parts.push(policySection(policy));
  }
  if (daily.excluded && daily.excluded.clicks) {
    parts.push(el('p', { class: 'muted' }, `${fmt('clicks', daily.excluded.clicks)} bot and preview clicks are left out.`));
  }
  root.lastChild.replaceWith(...parts);
}
