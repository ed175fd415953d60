// Audit (admin): per segment, the smartlink's EPC against sending the
// whole segment to one offer (doubly-robust estimates with 95% CIs) and
// against the offers' direct links; a recommendation is applied as an
// override through the API after a confirmation.

import { api } from './api.js';
import { intervalChart } from './chart.js';
import { el, fmt, go, errorBox, table, smartlinkPicker, periodPicker, periodOf, pickSmartlink, adminOnly, loading } from './util.js';

const money = (v) => (v === null || v === undefined ? '–' : fmt('epc', v));
const ci = (p, f = money) => (Array.isArray(p) ? `[${f(p[0])}, ${f(p[1])}]` : '–');
// Per 1,000 clicks: cents are enough.
const per1000 = (v) => (v === null || v === undefined ? '–' : fmt('revenue', v));
const label = (s) => [s.country, s.device, s.os].filter(Boolean).join('/');

function applyButton(slug, seg, rec) {
  const status = el('p', { class: 'ok', role: 'status' });
  const failed = el('p', { class: 'error', role: 'alert' });
  const name = label(seg.segment);
  const button = el('button', {
    type: 'button', class: 'apply', 'data-segment': name,
    onclick: async () => {
      status.textContent = '';
      failed.textContent = '';
      const ok = window.confirm(`Send every ${name} click of ${slug} to offer ${rec.offer}?\n\n`
        + 'This adds an override at the top of the smartlink\'s list (it is recorded in the change history and can be removed by editing the smartlink).');
      if (!ok) return;
      button.disabled = true;
      try {
        await api(rec.apply.path, { method: rec.apply.method || 'POST', body: rec.apply.body });
        status.replaceChildren(`Applied: ${name} now goes to ${rec.offer}. `,
          el('a', { href: `#/history?kind=smartlink&id=${encodeURIComponent(slug)}` }, 'See it in the change history'));
      } catch (e) {
        button.disabled = false;
        failed.textContent = e.message;
      }
    },
  }, `Apply: send ${name} to ${rec.offer}`);
  return el('div', { class: 'recommendation' }, el('p', {}, el('strong', {}, 'Recommendation: '), rec.text), button, status, failed);
}

function directLinks(list) {
  if (!list || !list.length) return null;
  return el('details', {}, el('summary', {}, 'Direct links beside the smartlink'),
    table('What each offer\'s direct link earned on this segment\'s clicks, against the smartlink', ['Link', 'Clicks#', 'EPC#', '95% CI', 'vs smartlink per 1,000#', '95% CI', 'Better'],
      list.map((d) => [d.link, fmt('clicks', d.clicks), money(d.epc), ci(d.ci), per1000(d.vs_smartlink_epc_per_1000), ci(d.vs_smartlink_ci_per_1000, per1000), d.better])));
}

function segmentSection(slug, seg, i) {
  const name = label(seg.segment);
  const rows = [{ label: 'smartlink (as routed)', value: seg.smartlink_epc, lo: seg.smartlink_ci?.[0], hi: seg.smartlink_ci?.[1], kind: 'smartlink' },
    ...seg.offers.map((o) => ({ label: `all to ${o.offer}`, value: o.dr_epc, lo: o.ci?.[0] ?? null, hi: o.ci?.[1] ?? null, kind: seg.recommendation && seg.recommendation.offer === o.offer ? 'best' : '' }))];
  const offerRows = seg.offers.map((o) => [o.offer, fmt('clicks', o.clicks), money(o.dr_epc), ci(o.ci), per1000(o.uplift_per_1000), ci(o.uplift_ci_per_1000, per1000), o.note || '']);
  return el('section', { class: 'card audit-segment', 'data-segment': name, 'aria-labelledby': `seg-${i}` },
    el('h2', { id: `seg-${i}` }, name),
    el('p', {}, `${fmt('clicks', seg.clicks)} clicks (${fmt('clicks', seg.fallback_clicks)} to the fallback). The smartlink earned `,
      el('strong', { 'data-smartlink-epc': seg.smartlink_epc }, money(seg.smartlink_epc)), ` per click, 95% CI ${ci(seg.smartlink_ci)}.`),
    intervalChart(rows, `EPC of ${name}: the smartlink against each offer alone, with 95% confidence intervals`, money, seg.smartlink_epc),
    table(`If all of ${name} had gone to one offer (doubly-robust estimate)`, ['Offer', 'Clicks routed#', 'EPC#', '95% CI', 'Uplift per 1,000 clicks#', '95% CI', 'Note'], offerRows),
    seg.recommendation ? applyButton(slug, seg, seg.recommendation) : el('p', { class: 'muted' }, seg.note || 'No offer beats the smartlink with confidence here: keep routing.'),
    directLinks(seg.direct_links));
}

export async function render(root, query, who) {
  if (adminOnly(root, who, 'Audit')) return;
  const title = el('h1', {}, 'Audit');
  const picked = await pickSmartlink(root, title, query);
  if (!picked) return;
  const { links, slug } = picked;
  const period = periodOf(query);
  const nav = (next) => go('audit', { smartlink: slug, period, ...next });
  root.replaceChildren(title,
    el('p', { class: 'muted' }, 'Per segment: what the smartlink earned per click, and what sending the whole segment to one offer would have earned, estimated from the propensities logged with every click.'),
    el('div', { class: 'controls' }, smartlinkPicker(links, slug, (v) => nav({ smartlink: v })), periodPicker(period, (v) => nav({ period: v }))),
    loading());
  let audit;
  try {
    audit = await api(`/api/v1/audit?smartlink=${encodeURIComponent(slug)}&period=${period}`);
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const parts = audit.segments.map((seg, i) => segmentSection(slug, seg, i));
  if (!parts.length) parts.push(el('p', { class: 'muted' }, 'No segment has enough clicks to audit yet.'));
  if (audit.thin_segments.length) {
    parts.push(el('section', { 'aria-labelledby': 'thin-title' },
      el('h2', { id: 'thin-title' }, 'Segments with too little data'),
      table(null, ['Segment', 'Clicks#', 'Why not audited'], audit.thin_segments.map((s) => [label(s.segment), fmt('clicks', s.clicks), s.note]), { id: 'thin', label: 'Segments with too little data' })));
  }
  parts.push(el('p', { class: 'muted' }, `Estimator: ${audit.estimator}.`));
  root.lastChild.replaceWith(...parts);
}
