// Coverage gaps (admin): clicks of a smartlink that fell through to the
// fallback, by reason and by country × device, with the revenue each gap
// likely missed and what to do about it.

import { api } from './api.js';
import { el, fmt, go, errorBox, table, smartlinkPicker, periodPicker, periodOf, pickSmartlink, adminOnly, loading } from './util.js';

const pct = (v) => fmt('cr', v);

export async function render(root, query, who) {
  if (adminOnly(root, who, 'Coverage gaps')) return;
  const title = el('h1', {}, 'Coverage gaps');
  const picked = await pickSmartlink(root, title, query);
  if (!picked) return;
  const { links, slug } = picked;
  const period = periodOf(query);
  const nav = (next) => go('coverage', { smartlink: slug, period, ...next });
  root.replaceChildren(title,
    el('div', { class: 'controls' }, smartlinkPicker(links, slug, (v) => nav({ smartlink: v })), periodPicker(period, (v) => nav({ period: v }))),
    loading());
  let cov;
  try {
    cov = await api(`/api/v1/coverage?smartlink=${encodeURIComponent(slug)}&period=${period}`);
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const kpi = (metric, label, value, text) => el('div', { class: 'kpi', 'data-metric': metric, 'data-value': value },
    el('span', { class: 'kpi-label' }, label), el('span', { class: 'kpi-value' }, text));
  const reasons = Object.entries(cov.by_reason || {}).filter(([, n]) => n > 0);
  root.lastChild.replaceWith(
    el('section', { class: 'kpis', 'aria-label': 'Coverage figures' },
      kpi('clicks', 'Human and suspect clicks', cov.clicks, fmt('clicks', cov.clicks)),
      kpi('fallback_clicks', 'To the fallback', cov.fallback_clicks, fmt('clicks', cov.fallback_clicks)),
      kpi('fallback_share', 'Fallback share', cov.fallback_share, pct(cov.fallback_share)),
      kpi('routed_epc', 'EPC of routed clicks', cov.routed_epc, fmt('epc', cov.routed_epc))),
    el('section', { 'aria-labelledby': 'why-title' },
      el('h2', { id: 'why-title' }, 'Why clicks fell through'),
      reasons.length ? table(null, ['Reason', 'Clicks#'], reasons.map(([k, n]) => [k.replaceAll('_', ' '), fmt('clicks', n)]), { id: 'reasons', label: 'Why clicks fell through' })
        : el('p', { class: 'muted' }, 'No click fell through to the fallback.')),
    el('section', { 'aria-labelledby': 'gaps-title' },
      el('h2', { id: 'gaps-title' }, 'Gaps, largest missed revenue first'),
      cov.gaps.length
        ? table(null, ['Segment', 'Clicks#', 'Share of clicks#', 'Fallback clicks#', 'Fallback share#', 'Eligible offers#', 'Missed revenue (est.)#', 'Advice'],
          cov.gaps.map((g) => [`${g.country}/${g.device}`, fmt('clicks', g.clicks), pct(g.share_of_clicks),
            el('span', { 'data-fallback': `${g.country}/${g.device}` }, fmt('clicks', g.fallback_clicks)), pct(g.fallback_share),
            String(g.eligible_offers), fmt('revenue', g.missed_revenue_estimate), g.advice]), { id: 'gaps', label: 'Coverage gaps' })
        : el('p', { class: 'muted' }, 'No gaps.')));
}
