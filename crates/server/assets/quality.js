// Traffic quality per source (admin): human, suspect and bot shares,
// rejections, chargebacks and click-to-install times per affiliate,
// traffic source or sub-id; flagged sources first, with why.

import { api } from './api.js';
import { el, fmt, go, errorBox, table, smartlinkPicker, periodPicker, periodOf, pickSmartlink, adminOnly, loading } from './util.js';

const pct = (v) => fmt('cr', v);
const BY = [['affiliate', 'Affiliate'], ['source', 'Traffic source'], ['sub1', 'sub1'], ['sub2', 'sub2'], ['sub3', 'sub3']];

export async function render(root, query, who) {
  if (adminOnly(root, who, 'Traffic quality')) return;
  const title = el('h1', {}, 'Traffic quality per source');
  const picked = await pickSmartlink(root, title, query);
  if (!picked) return;
  const { links, slug } = picked;
  const period = periodOf(query);
  const by = BY.some(([b]) => b === query.get('by')) ? query.get('by') : 'affiliate';
  const nav = (next) => go('quality', { smartlink: slug, period, by, ...next });
  const bySel = el('select', { id: 'by', onchange: (e) => nav({ by: e.target.value }) }, BY.map(([v, t]) => el('option', { value: v, selected: v === by }, t)));
  root.replaceChildren(title,
    el('div', { class: 'controls' }, smartlinkPicker(links, slug, (v) => nav({ smartlink: v })), periodPicker(period, (v) => nav({ period: v })),
      el('label', { for: 'by' }, 'Per'), bySel),
    loading());
  let q;
  try {
    q = await api(`/api/v1/quality?smartlink=${encodeURIComponent(slug)}&period=${period}&by=${by}`);
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const name = (r) => (by === 'affiliate' ? r.affiliate : by === 'source' ? r.source : r.sub) ?? '(none)';
  const flags = (r) => (r.flags || []).map((f) => `${f.signal.replaceAll('_', ' ')} ${pct(f.value)} vs ${pct(f.rest)}`).join('; ');
  const rows = q.sources.map((r) => [
    el('span', { 'data-source': name(r) }, String(name(r))),
    r.flagged ? el('strong', { class: 'flag' }, 'Flagged') : 'ok',
    fmt('clicks', r.clicks), pct(r.bot_share), pct(r.suspect_share), fmt('clicks', r.conversions),
    pct(r.rejection_rate), pct(r.chargeback_rate), r.median_ctit_secs === null ? '–' : `${r.median_ctit_secs} s`, flags(r)]);
  const t = q.totals;
  root.lastChild.replaceWith(
    el('p', {}, `${fmt('clicks', t.clicks)} clicks: ${pct(t.bot_share)} bots and previews, ${pct(t.suspect_share)} suspect; `
      + `${fmt('clicks', t.conversions)} conversions, ${pct(t.rejection_rate)} rejected, ${pct(t.chargeback_rate)} charged back.`),
    rows.length
      ? table(`Flagged sources first (a share at least 3 standard errors above the rest's; sources with at least ${q.min_clicks} clicks are judged)`,
        ['Source', 'Verdict', 'Clicks#', 'Bots#', 'Suspect#', 'Conversions#', 'Rejected#', 'Charged back#', 'Median CTIT#', 'Why flagged'], rows, { id: 'quality' })
      : el('p', { class: 'muted' }, 'No clicks in this period.'));
}
