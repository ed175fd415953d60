// Offers (admin): the list, and an edit form for the payout and the
// status through the admin API (PATCH with If-Match), the API's
// validation errors shown next to their field.

import { api, ApiError } from './api.js';
import { el, fmt, go, errorBox } from './util.js';
import * as defs from './defs.js';

async function list(root) {
  root.replaceChildren(el('h1', {}, 'Offers'),
    el('p', {}, el('a', { href: '#/offers/new', class: 'button', id: 'new' }, 'New offer')),
    el('p', { class: 'loading' }, 'Loading…'));
  let offers;
  try {
    offers = await api('/api/v1/offers');
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const rows = offers.map((o) => el('tr', {},
    el('th', { scope: 'row' }, el('a', { href: `#/offers/${encodeURIComponent(o.id)}` }, o.id)),
    el('td', {}, o.advertiser),
    el('td', { class: 'num' }, `${fmt('revenue', o.payout)} ${o.currency || ''}`.trim()),
    el('td', {}, el('span', { class: `status ${o.status || 'active'}` }, o.status || 'active'))));
  root.lastChild.replaceWith(el('div', { class: 'scroll' }, el('table', { id: 'offers' },
    el('thead', {}, el('tr', {}, ['Offer', 'Advertiser', 'Payout', 'Status'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows))));
}

// The field a validation error's path names (`payout`, `status`, ...).
function fieldOf(path) {
  return String(path || '').replace(/^\//, '').split(/[.[/]/)[0];
}

async function edit(root, id) {
  root.replaceChildren(el('h1', {}, `Offer ${id}`), el('p', { class: 'loading' }, 'Loading…'));
  let offer, etag;
  try {
    ({ data: offer, etag } = await api(`/api/v1/offers/${encodeURIComponent(id)}`, { etag: true }));
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const status = offer.status || 'active';
  const payout = el('input', { id: 'payout', name: 'payout', type: 'number', step: 'any', value: offer.payout, 'aria-describedby': 'payout-error', required: true });
  const payoutError = el('p', { id: 'payout-error', class: 'field-error', 'data-field-error': 'payout' });
  const formError = el('p', { class: 'error', role: 'alert', id: 'form-error' });
  const saved = el('p', { class: 'ok', role: 'status', id: 'form-status' });
  const errors = { payout: payoutError };
  const clear = () => {
    for (const e of Object.values(errors)) e.textContent = '';
    payout.removeAttribute('aria-invalid');
    formError.textContent = '';
    saved.textContent = '';
  };
  const send = async (patch, what) => {
    clear();
    try {
      const r = await api(`/api/v1/offers/${encodeURIComponent(id)}`, { method: 'PATCH', body: patch, headers: etag ? { 'If-Match': etag } : {}, etag: true });
      etag = r.etag;
      offer = r.data;
      saved.textContent = `${what}.`;
      return true;
    } catch (e) {
      if (e instanceof ApiError && Array.isArray(e.body.fields) && e.body.fields.length) {
        for (const f of e.body.fields) {
          const target = errors[fieldOf(f.path)];
          if (target) {
            target.textContent = f.message;
            if (target === payoutError) payout.setAttribute('aria-invalid', 'true');
          } else {
            formError.textContent += `${f.path}: ${f.message} `;
          }
        }
      } else if (e instanceof ApiError && e.status === 412) {
        formError.textContent = 'Someone else changed this offer meanwhile: reload to see their change.';
      } else {
        formError.textContent = e.message;
      }
      return false;
    }
  };
  const form = el('form', {
    class: 'edit', novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      const v = payout.value.trim();
      const n = Number(v);
      await send({ payout: v !== '' && Number.isFinite(n) ? n : v }, 'Payout saved');
    },
  },
  el('label', { for: 'payout' }, `Payout (${offer.currency || 'base currency'})`), payout, payoutError,
  el('button', { type: 'submit' }, 'Save payout'));
  const toggle = el('button', {
    type: 'button', id: 'toggle-status',
    onclick: async () => {
      const next = (offer.status || 'active') === 'paused' ? 'active' : 'paused';
      if (await send({ status: next }, next === 'paused' ? 'Paused' : 'Resumed')) {
        statusCell.textContent = next;
        toggle.textContent = next === 'paused' ? 'Resume offer' : 'Pause offer';
      }
    },
  }, status === 'paused' ? 'Resume offer' : 'Pause offer');
  const statusCell = el('dd', { id: 'offer-status' }, status);
  root.lastChild.replaceWith(
    el('p', {}, el('a', { href: '#/offers' }, '‹ All offers')),
    el('dl', { class: 'facts' },
      el('dt', {}, 'Advertiser'), el('dd', {}, offer.advertiser),
      el('dt', {}, 'Status'), statusCell,
      el('dt', {}, 'URL'), el('dd', { class: 'url' }, offer.url)),
    form,
    el('div', { class: 'controls' }, toggle),
    formError, saved);
}

export async function render(root, query, who, rest) {
  if (who.role !== 'admin') {
    go('overview', {});
    return;
  }
  if (rest === 'new') await defs.render('offers', root, query, who, rest);
  else if (rest) await edit(root, decodeURIComponent(rest));
  else await list(root);
}
