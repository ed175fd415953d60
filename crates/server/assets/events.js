// Offer events from the change history (GET /api/v1/history, admin):
// pauses and resumes, payout changes and cap hits, for event lines on
// the charts and the lists under them.

import { api } from './api.js';

function describe(c) {
  const out = [];
  // A document's creation lists every field as new: not an event.
  if (c.action === 'create' || c.action === 'delete') return out;
  for (const f of c.fields || []) {
    if (f.field === 'event' && f.new) out.push({ kind: String(f.new).startsWith('capped') ? 'cap' : 'resume', what: String(f.new) });
    else if (f.field === 'status') out.push(f.new === 'paused' ? { kind: 'pause', what: 'paused' } : { kind: 'resume', what: 'resumed' });
    else if (f.field === 'payout') out.push({ kind: 'payout', what: `payout ${f.old ?? 'none'} → ${f.new ?? 'none'}` });
  }
  return out;
}

// Events of these offers in [fromMs, toMs), oldest first:
// [{time_ms, offer, kind, what, actor}].
export async function offerEvents(offers, fromMs, toMs) {
  const set = new Set(offers);
  const h = await api('/api/v1/history?kind=offer&limit=5000');
  const out = [];
  for (const c of h.changes) {
    if (!set.has(c.entity) || c.time_ms < fromMs || c.time_ms >= toMs) continue;
    for (const d of describe(c)) out.push({ time_ms: c.time_ms, offer: c.entity, actor: c.actor, ...d });
  }
  return out.sort((a, b) => a.time_ms - b.time_ms);
}
