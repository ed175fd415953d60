// Alerts and the change history (admin), newest first.

import { api } from './api.js';
import { el, go, errorBox, table, fmtTime, browserZone, adminOnly, loading } from './util.js';

const KINDS = ['', 'offer', 'smartlink', 'advertiser', 'affiliate', 'source'];

export async function alerts(root, query, who) {
  if (adminOnly(root, who, 'Alerts')) return;
  const tz = browserZone();
  root.replaceChildren(el('h1', {}, 'Alerts'),
    el('p', { class: 'muted' }, 'Drift alerts, newest first: EPC drops, pauses and payout cuts, conversions that stopped, fallback jumps and caps. The detector raises each at most once a day.'),
    loading());
  let a;
  try {
    a = await api('/api/v1/alerts?limit=200');
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  root.lastChild.replaceWith(a.alerts.length
    ? table(`Times in ${tz}`, ['Time', 'Kind', 'Smartlink', 'Offer', 'Segment', 'What happened'],
      a.alerts.map((x) => [el('span', { 'data-alert': x.id }, fmtTime(x.time_ms, tz)), x.kind.replaceAll('_', ' '), x.smartlink || '–', x.offer || '–', x.segment || '–', x.message]),
      { id: 'alerts' })
    : el('p', { class: 'muted' }, 'No alerts.'));
}

function value(v) {
  if (v === null || v === undefined) return '–';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

export async function history(root, query, who) {
  if (adminOnly(root, who, 'Change history')) return;
  const tz = browserZone();
  const kind = KINDS.includes(query.get('kind')) ? query.get('kind') : '';
  const id = query.get('id') || '';
  const kindSel = el('select', { id: 'hist-kind' }, KINDS.map((k) => el('option', { value: k, selected: k === kind }, k || 'anything')));
  const idInput = el('input', { id: 'hist-id', type: 'text', value: id, placeholder: 'any', size: 14 });
  root.replaceChildren(el('h1', {}, 'Change history'),
    el('form', {
      class: 'controls', role: 'search', 'aria-label': 'Filter the history',
      onsubmit: (e) => {
        e.preventDefault();
        go('history', { kind: kindSel.value, id: idInput.value.trim() });
      },
    }, el('label', { for: 'hist-kind' }, 'Kind'), kindSel, el('label', { for: 'hist-id' }, 'Id'), idInput, el('button', { type: 'submit' }, 'Show')),
    loading());
  const p = new URLSearchParams({ limit: '200' });
  if (kind) p.set('kind', kind);
  if (id) p.set('id', id);
  let h;
  try {
    h = await api('/api/v1/history?' + p);
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const rows = h.changes.map((c) => [
    el('span', { 'data-change': c.id }, fmtTime(c.time_ms, tz)), c.kind, c.entity, c.action, c.actor,
    el('ul', { class: 'fields' }, c.fields.map((f) => el('li', {}, el('code', {}, f.field), `: ${value(f.old)} → ${value(f.new)}`)))]);
  root.lastChild.replaceWith(rows.length
    ? table(`Newest first; times in ${tz}`, ['Time', 'Kind', 'Id', 'Action', 'By', 'Fields (before → after)'], rows, { id: 'history' })
    : el('p', { class: 'muted' }, 'No changes match.'));
}
