// Why did EPC change (admin): two periods of a smartlink, the change of
// its EPC split into traffic mix, offer pool, payout, conversion rate and
// approval (the explain API's exact decomposition) as a waterfall, with
// the API's explanation in words and the offers' events from the change
// history.

import { api } from './api.js';
import { waterfallChart } from './chart.js';
import {
  el, fmt, range, addDays, daysBetween, validDate, go, errorBox, table, smartlinkPicker, pickSmartlink, adminOnly, loading,
  zonedMidnight, fmtTime, zones,
} from './util.js';
import { offerEvents } from './events.js';

const PARTS = [
  ['traffic_mix', 'Traffic mix'],
  ['offer_pool', 'Offer pool'],
  ['payout', 'Payout'],
  ['conversion_rate', 'Conversion rate'],
  ['approval', 'Approval'],
];
const money = (v) => fmt('epc', v);
const signed = (v) => (v > 0 ? '+' : v < 0 ? '−' : '') + fmt('epc', Math.abs(v));

function state(query) {
  const r = range(query);
  const days = daysBetween(r.from, r.to) + 1;
  let vsFrom = validDate(query.get('vs_from')) ? query.get('vs_from') : addDays(r.from, -days);
  let vsTo = validDate(query.get('vs_to')) ? query.get('vs_to') : addDays(r.from, -1);
  if (vsFrom > vsTo) [vsFrom, vsTo] = [vsTo, vsFrom];
  return { ...r, vs_from: vsFrom, vs_to: vsTo };
}

function periodForm(st, onChange) {
  const input = (id, value) => el('input', { type: 'date', id, value, required: true });
  const from = input('cur-from', st.from);
  const to = input('cur-to', st.to);
  const vsFrom = input('vs-from', st.vs_from);
  const vsTo = input('vs-to', st.vs_to);
  const tz = el('select', { id: 'explain-tz' }, zones().map((z) => el('option', { value: z, selected: z === st.tz }, z)));
  if (!zones().includes(st.tz)) tz.append(el('option', { value: st.tz, selected: true }, st.tz));
  return el('form', {
    class: 'periods',
    onsubmit: (e) => {
      e.preventDefault();
      if ([from, to, vsFrom, vsTo].every((i) => validDate(i.value))) {
        onChange({ from: from.value, to: to.value, vs_from: vsFrom.value, vs_to: vsTo.value, tz: tz.value });
      }
    },
  },
  el('fieldset', {}, el('legend', {}, 'This period'), el('label', { for: 'cur-from' }, 'From'), from, el('label', { for: 'cur-to' }, 'To'), to),
  el('fieldset', {}, el('legend', {}, 'Compared with'), el('label', { for: 'vs-from' }, 'From'), vsFrom, el('label', { for: 'vs-to' }, 'To'), vsTo),
  el('div', { class: 'controls' }, el('label', { for: 'explain-tz' }, 'Time zone'), tz, el('button', { type: 'submit' }, 'Compare')));
}

export async function render(root, query, who) {
  if (adminOnly(root, who, 'Why did EPC change?')) return;
  const title = el('h1', {}, 'Why did EPC change?');
  const picked = await pickSmartlink(root, title, query);
  if (!picked) return;
  const { links, slug, link } = picked;
  const st = state(query);
  const nav = (next) => go('explain', { smartlink: slug, from: st.from, to: st.to, vs_from: st.vs_from, vs_to: st.vs_to, tz: st.tz, ...next });
  root.replaceChildren(title,
    el('div', { class: 'controls' }, smartlinkPicker(links, slug, (v) => nav({ smartlink: v }))),
    periodForm(st, nav),
    loading());
  const cur = [zonedMidnight(st.from, st.tz), zonedMidnight(addDays(st.to, 1), st.tz)];
  const base = [zonedMidnight(st.vs_from, st.tz), zonedMidnight(addDays(st.vs_to, 1), st.tz)];
  const q = new URLSearchParams({ smartlink: slug, from: String(cur[0]), to: String(cur[1]), vs: `${base[0]}..${base[1]}` });
  let out, events;
  try {
    [out, events] = await Promise.all([
      api(`/api/v1/explain?${q}`),
      offerEvents(link.offers || [], Math.min(base[0], cur[0]), Math.max(base[1], cur[1])),
    ]);
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const steps = PARTS.map(([k, label]) => ({ key: k, label, value: out.parts[k] || 0 }));
  const chart = waterfallChart(
    { label: 'Before', value: out.baseline.epc },
    steps,
    { label: 'Now', value: out.current.epc },
    `EPC of ${slug} from ${money(out.baseline.epc)} to ${money(out.current.epc)}: the change split into its parts`,
    money);
  const rows = [
    ['EPC before', el('span', { 'data-part': 'baseline' }, money(out.baseline.epc))],
    ...steps.map((s) => [s.label, el('span', { 'data-part': s.key, 'data-value': s.value }, signed(s.value))]),
    ['EPC now', el('span', { 'data-part': 'current' }, money(out.current.epc))],
    ['Change', el('span', { 'data-part': 'change', 'data-value': out.change }, signed(out.change))],
  ];
  const parts = [
    el('p', { class: 'summary', id: 'explain-summary' }, out.summary),
    el('section', { class: 'card', 'aria-labelledby': 'wf-title' },
      el('h2', { id: 'wf-title' }, 'The change, part by part'),
      chart,
      table(`${st.vs_from} to ${st.vs_to} (${fmt('clicks', out.baseline.clicks)} clicks) against ${st.from} to ${st.to} (${fmt('clicks', out.current.clicks)} clicks), ${st.tz}`,
        ['Part', 'EPC#'], rows, { id: 'explain-table' })),
  ];
  if (out.contributors.length) {
    parts.push(el('section', { 'aria-labelledby': 'contrib-title' },
      el('h2', { id: 'contrib-title' }, 'The largest contributors'),
      el('ol', { id: 'contributors' }, out.contributors.map((c) => el('li', {}, c.text)))));
  }
  parts.push(el('section', { 'aria-labelledby': 'ev-title' },
    el('h2', { id: 'ev-title' }, 'What happened to the offers'),
    events.length
      ? el('ol', { class: 'events', id: 'events' }, events.map((ev) => el('li', {}, `${fmtTime(ev.time_ms, st.tz)} ${ev.offer} ${ev.what} (by ${ev.actor})`)))
      : el('p', { class: 'muted' }, 'The change history has no pause, cap or payout change of these offers in either period.')));
  root.lastChild.replaceWith(...parts);
}
