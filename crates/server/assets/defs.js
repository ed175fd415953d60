// Edit forms for the definitions (admin): smartlinks, advertisers,
// affiliates and traffic sources (list, create, edit), and creating
// offers. Creating is a POST of the whole document; editing a JSON merge
// PATCH of the fields changed, with the ETag read as If-Match (a change
// made meanwhile is refused, not overwritten). The API validates: its
// errors are shown next to the field they name.

import { api, ApiError } from './api.js';
import { el, go, errorBox, adminOnly, loading } from './util.js';

// Field kinds: text, number, list (comma-separated), numbers, select,
// json, secret (never shown; blank keeps it), check.
const KINDS = {
  smartlinks: {
    title: 'Smartlinks', one: 'Smartlink', idField: 'slug',
    columns: [['slug', 'Slug'], ['affiliate', 'Affiliate'], ['strategy', 'Strategy'], ['offers', 'Offers']],
    fields: [
      { name: 'slug', label: 'Slug (the link is /s/slug)', type: 'text', required: true, createOnly: true },
      { name: 'affiliate', label: 'Owner (affiliate)', type: 'select', from: 'affiliates' },
      { name: 'offers', label: 'Offers, in order (comma-separated ids)', type: 'list', required: true, hint: 'offers' },
      { name: 'fallback_url', label: 'Fallback URL', type: 'text', required: true },
      { name: 'strategy', label: 'Strategy', type: 'select', options: ['auto', 'weighted', 'priority'], fallback: 'auto' },
      { name: 'weights', label: 'Weights, one per offer (for weighted)', type: 'numbers' },
      { name: 'overrides', label: 'Overrides (JSON list of {countries, devices, os, offer})', type: 'json' },
      { name: 'source', label: 'Traffic source of clicks that name none', type: 'select', from: 'sources' },
      { name: 'postback_url', label: 'Outbound postback URL', type: 'text' },
      { name: 'quality', label: 'Quality actions (JSON: {bot, suspect, preview, safe_page})', type: 'json' },
    ],
  },
  advertisers: {
    title: 'Advertisers', one: 'Advertiser', idField: 'id',
    columns: [['id', 'Id'], ['postback_token_set', 'Postback token'], ['allow_pixel', 'Pixel']],
    fields: [
      { name: 'id', label: 'Id', type: 'text', required: true, createOnly: true },
      { name: 'postback_token', label: 'Postback token', type: 'secret' },
      { name: 'postback_secret', label: 'Postback signing secret', type: 'secret' },
      { name: 'postback_ips', label: 'Postbacks only from (comma-separated CIDRs)', type: 'list' },
      { name: 'allow_pixel', label: 'Accept the conversion pixel', type: 'check' },
    ],
  },
  affiliates: {
    title: 'Affiliates', one: 'Affiliate', idField: 'id',
    columns: [['id', 'Id'], ['payout_share', 'Payout share'], ['api_key_set', 'API key']],
    fields: [
      { name: 'id', label: 'Id', type: 'text', required: true, createOnly: true },
      { name: 'payout_share', label: 'Payout share (0 to 1; default 1)', type: 'number' },
      { name: 'payout_shares', label: 'Per-offer shares (JSON: {"offer": 0.7})', type: 'json' },
      { name: 'postback_url', label: 'Outbound postback URL', type: 'text' },
      { name: 'postback_statuses', label: 'Statuses that fire it (comma-separated)', type: 'list' },
      { name: 'api_key', label: 'API key (read-only access to its own data)', type: 'secret' },
      { name: 'fallback_url', label: 'Fallback URL of its direct-link clicks', type: 'text' },
    ],
  },
  sources: {
    title: 'Traffic sources', one: 'Traffic source', idField: 'id',
    columns: [['id', 'Id'], ['currency', 'Currency'], ['postback_url', 'Postback URL']],
    fields: [
      { name: 'id', label: 'Id', type: 'text', required: true, createOnly: true },
      { name: 'params', label: 'Its parameter names (JSON: {"sub1": "zoneid", "cost": "price"})', type: 'json' },
      { name: 'currency', label: 'Currency of its cost parameter', type: 'text' },
      { name: 'cost', label: 'Cost model (JSON: {"model": "cpc", "amount": 0.02})', type: 'json' },
      { name: 'postback_url', label: 'Outbound postback URL', type: 'text' },
      { name: 'postback_statuses', label: 'Statuses that fire it (comma-separated)', type: 'list' },
    ],
  },
  offers: {
    title: 'Offers', one: 'Offer', idField: 'id',
    fields: [
      { name: 'id', label: 'Id', type: 'text', required: true, createOnly: true },
      { name: 'advertiser', label: 'Advertiser', type: 'select', from: 'advertisers', required: true },
      { name: 'url', label: 'URL (with {click_id})', type: 'text', required: true },
      { name: 'payout', label: 'Payout', type: 'number', required: true },
      { name: 'currency', label: 'Currency (default: the base currency)', type: 'text' },
      { name: 'status', label: 'Status', type: 'select', options: ['active', 'paused'], fallback: 'active' },
      { name: 'targeting', label: 'Targeting (JSON: {"countries": ["US"], "devices": ["mobile"]})', type: 'json' },
      { name: 'caps', label: 'Daily caps (JSON: {"daily_clicks": 1000})', type: 'json' },
    ],
  },
};

// The field a validation error's path names (`offers[0]` → `offers`).
function fieldOf(path) {
  return String(path || '').replace(/^\//, '').split(/[.[/]/)[0];
}

function shown(v) {
  if (v === null || v === undefined) return '–';
  if (Array.isArray(v)) return v.join(', ');
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return String(v);
}

async function list(root, kind) {
  const k = KINDS[kind];
  root.replaceChildren(el('h1', {}, k.title),
    el('p', {}, el('a', { href: `#/${kind}/new`, class: 'button', id: 'new' }, `New ${k.one.toLowerCase()}`)),
    loading());
  let docs;
  try {
    docs = await api(`/api/v1/${kind}`);
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const rows = docs.map((d) => el('tr', {}, k.columns.map(([c], i) => (i === 0
    ? el('th', { scope: 'row' }, el('a', { href: `#/${kind}/${encodeURIComponent(d[c])}` }, d[c]))
    : el('td', {}, shown(d[c]))))));
  root.lastChild.replaceWith(docs.length
    ? el('div', { class: 'scroll' }, el('table', { id: kind },
      el('thead', {}, el('tr', {}, k.columns.map(([, h]) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows)))
    : el('p', { class: 'muted' }, 'None yet.'));
}

// The choices of a select that lists other definitions.
async function choices(fields) {
  const out = {};
  await Promise.all(fields.filter((f) => f.from || f.hint).map(async (f) => {
    const what = f.from || f.hint;
    const docs = await api(`/api/v1/${what}`);
    out[f.name] = docs.map((d) => d.id || d.slug);
  }));
  return out;
}

// One input per field, with its label and the place for its error.
function input(f, value, opts, creating) {
  const id = `f-${f.name}`;
  const described = `${id}-error`;
  const common = { id, name: f.name, 'aria-describedby': described };
  let control;
  switch (f.type) {
    case 'select': {
      const values = f.options || ['', ...(opts[f.name] || [])];
      const current = value ?? (f.fallback || '');
      if (!values.includes(current)) values.push(current);
      control = el('select', common, values.map((v) => el('option', { value: v, selected: v === current }, v || '(none)')));
      break;
    }
    case 'json':
      control = el('textarea', { ...common, rows: 3, spellcheck: 'false' });
      control.value = value === undefined || value === null ? '' : JSON.stringify(value);
      break;
    case 'check':
      control = el('input', { ...common, type: 'checkbox', checked: Boolean(value) });
      break;
    case 'secret':
      control = el('input', { ...common, type: 'password', autocomplete: 'new-password', value: '' });
      break;
    default:
      control = el('input', {
        ...common, type: f.type === 'number' ? 'text' : 'text', inputmode: f.type === 'number' ? 'decimal' : null,
        value: value === undefined || value === null ? '' : Array.isArray(value) ? value.join(', ') : String(value),
        required: f.required || null, readonly: f.createOnly && !creating ? true : null,
      });
  }
  const error = el('p', { id: described, class: 'field-error', 'data-field-error': f.name });
  const note = f.type === 'secret' ? el('span', { class: 'muted' }, creating ? ' (optional)' : value ? ' (set; leave blank to keep it)' : ' (not set)')
    : f.hint && opts[f.name] ? el('span', { class: 'muted' }, ` (offers: ${opts[f.name].join(', ')})`) : null;
  const wrap = f.type === 'check'
    ? el('div', { class: 'field check' }, control, el('label', { for: id }, f.label), error)
    : el('div', { class: 'field' }, el('label', { for: id }, f.label, note), control, error);
  return { f, control, error, wrap };
}

// The value a field's control holds, as the API takes it; `undefined`
// when empty; throws a message for JSON that does not parse.
function read({ f, control }) {
  if (f.type === 'check') return control.checked;
  const v = control.value.trim();
  if (v === '') return undefined;
  switch (f.type) {
    case 'number': {
      const n = Number(v);
      return Number.isFinite(n) ? n : v;
    }
    case 'list':
      return v.split(',').map((s) => s.trim()).filter(Boolean);
    case 'numbers':
      return v.split(',').map((s) => s.trim()).filter(Boolean).map((s) => (Number.isFinite(Number(s)) ? Number(s) : s));
    case 'json':
      try {
        return JSON.parse(v);
      } catch {
        throw new Error('not valid JSON');
      }
    default:
      return v;
  }
}

async function form(root, kind, id) {
  const k = KINDS[kind];
  const creating = id === null;
  const heading = el('h1', {}, creating ? `New ${k.one.toLowerCase()}` : `${k.one} ${id}`);
  root.replaceChildren(heading, loading());
  let doc = {};
  let etag = null;
  let opts;
  try {
    [opts] = await Promise.all([
      choices(k.fields),
      creating ? null : api(`/api/v1/${kind}/${encodeURIComponent(id)}`, { etag: true }).then((r) => {
        doc = r.data;
        etag = r.etag;
      }),
    ]);
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const inputs = k.fields.map((f) => input(f, f.type === 'secret' ? doc[`${f.name}_set`] : doc[f.name], opts, creating));
  const formError = el('p', { class: 'error', role: 'alert', id: 'form-error' });
  const saved = el('p', { class: 'ok', role: 'status', id: 'form-status' });
  const byName = Object.fromEntries(inputs.map((i) => [i.f.name, i]));
  const clear = () => {
    for (const i of inputs) {
      i.error.textContent = '';
      i.control.removeAttribute('aria-invalid');
    }
    formError.textContent = '';
    saved.textContent = '';
  };
  const mark = (name, message) => {
    const i = byName[name];
    if (i) {
      i.error.textContent = message;
      i.control.setAttribute('aria-invalid', 'true');
    } else {
      formError.textContent += `${name ? name + ': ' : ''}${message} `;
    }
  };
  const submit = async (e) => {
    e.preventDefault();
    clear();
    const body = {};
    let bad = false;
    for (const i of inputs) {
      if (i.f.createOnly && !creating) continue;
      let v;
      try {
        v = read(i);
      } catch (err) {
        mark(i.f.name, err.message);
        bad = true;
        continue;
      }
      if (creating) {
        if (v !== undefined && !(i.f.type === 'check' && v === false)) body[i.f.name] = v;
      } else if (i.f.type === 'secret') {
        if (v !== undefined) body[i.f.name] = v;
      } else {
        const before = doc[i.f.name] ?? i.f.fallback;
        const same = JSON.stringify(v ?? null) === JSON.stringify(before ?? null) || (i.f.type === 'check' && !v && !before);
        if (!same) body[i.f.name] = v === undefined ? null : v;
      }
    }
    if (bad) return;
    if (!creating && !Object.keys(body).length) {
      saved.textContent = 'Nothing changed.';
      return;
    }
    try {
      const r = creating
        ? await api(`/api/v1/${kind}`, { method: 'POST', body, etag: true })
        : await api(`/api/v1/${kind}/${encodeURIComponent(id)}`, { method: 'PATCH', body, headers: etag ? { 'If-Match': etag } : {}, etag: true });
      if (creating) {
        go(`${kind}/${encodeURIComponent(r.data[k.idField])}`, { created: '1' });
        return;
      }
      doc = r.data;
      etag = r.etag;
      for (const i of inputs) if (i.f.type === 'secret') i.control.value = '';
      saved.textContent = 'Saved.';
    } catch (err) {
      if (err instanceof ApiError && Array.isArray(err.body.fields) && err.body.fields.length) {
        for (const f of err.body.fields) mark(fieldOf(f.path), f.message);
        if (!formError.textContent) formError.textContent = 'Not saved: see the fields marked.';
      } else if (err instanceof ApiError && err.status === 412) {
        formError.textContent = `Someone else changed this ${k.one.toLowerCase()} meanwhile: reload to see their change.`;
      } else {
        formError.textContent = err.message;
      }
    }
  };
  const back = kind === 'offers' ? '#/offers' : `#/${kind}`;
  root.lastChild.replaceWith(
    el('p', {}, el('a', { href: back }, `‹ All ${k.title.toLowerCase()}`)),
    el('form', { class: 'edit wide', novalidate: true, onsubmit: submit, id: 'def-form' },
      inputs.map((i) => i.wrap),
      el('button', { type: 'submit' }, creating ? `Create ${k.one.toLowerCase()}` : 'Save changes')),
    formError, saved);
  if (location.hash.includes('created=1')) saved.textContent = `${k.one} created.`;
}

export async function render(kind, root, query, who, rest) {
  if (adminOnly(root, who, KINDS[kind].title)) return;
  if (rest === 'new') await form(root, kind, null);
  else if (rest) await form(root, kind, decodeURIComponent(rest));
  else await list(root, kind);
}
