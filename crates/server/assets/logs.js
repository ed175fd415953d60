// The click log and the conversion log: newest first, a page at a time
// (the click log by the API's cursor, conversions by `before`), with a
// search by click id that shows the click, its routing decision and its
// conversions. Affiliates see their own (the API scopes them).

import { api, ApiError } from './api.js';
import { el, fmt, range, rangeParams, rangeControls, go, errorBox, table, fmtTime, loading } from './util.js';

const PAGE = 50;

function searchForm(current, onSearch) {
  const input = el('input', { id: 'click-search', type: 'search', value: current || '', placeholder: '52-character click id', spellcheck: 'false', autocomplete: 'off' });
  return el('form', {
    class: 'controls', role: 'search', 'aria-label': 'Find a click',
    onsubmit: (e) => {
      e.preventDefault();
      onSearch(input.value.trim());
    },
  }, el('label', { for: 'click-search' }, 'Click id'), input, el('button', { type: 'submit' }, 'Find'),
  current ? el('button', { type: 'button', class: 'quiet', onclick: () => onSearch('') }, 'Clear') : null);
}

function conversionRows(list, tz) {
  return list.map((c) => [
    el('code', { 'data-conversion': c.id }, String(c.id)),
    fmtTime(c.time_ms, tz), el('code', {}, c.click_id), c.offer ?? '–', c.smartlink ?? '–', c.affiliate ?? '–',
    el('span', { class: `status ${c.status}` }, c.status), fmt('revenue', c.payout_base), c.country || '–',
    c.ctit_secs === null || c.ctit_secs === undefined ? '–' : `${c.ctit_secs} s`]);
}
const CONVERSION_HEAD = ['Id', 'Time', 'Click id', 'Offer', 'Smartlink', 'Affiliate', 'Status', 'Payout#', 'Country', 'Click to conversion#'];

// One click: what it was, why it went where it went, its conversions.
async function clickDetail(id, tz) {
  let d;
  try {
    d = await api(`/api/v1/clicks/${encodeURIComponent(id)}`);
  } catch (e) {
    return errorBox(e instanceof ApiError && e.status === 404 ? `No click ${id} (or not yours).` : e);
  }
  const c = d.click;
  const facts = [
    ['Time', fmtTime(c.time_ms, tz)], ['Smartlink', c.smartlink], ['Offer', c.offer ?? 'fallback'], ['Affiliate', c.affiliate ?? '–'],
    ['Source', c.source ?? '–'], ['Visitor', [c.country, c.device, c.os, c.browser, c.language].filter(Boolean).join(' · ')],
    ['Sub-ids', [c.sub1, c.sub2, c.sub3, c.sub4, c.sub5].map((s) => s || '–').join(' / ')],
    ['Decision', `${d.decision.reason}${d.decision.fallback_reason ? ` (${d.decision.fallback_reason})` : ''}, probability ${d.decision.propensity}`],
    ['Quality', `${d.decision.quality.class}, score ${d.decision.quality.score}${d.decision.quality.reasons.length ? ': ' + d.decision.quality.reasons.join(', ') : ''}`],
  ];
  if (c.ip !== undefined) facts.push(['IP', c.ip || '–']);
  facts.push(['User-Agent', c.user_agent || '–']);
  return el('section', { class: 'card', id: 'click-detail', 'aria-labelledby': 'click-title' },
    el('h2', { id: 'click-title' }, 'Click ', el('code', {}, c.click_id)),
    el('dl', { class: 'facts' }, facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
    el('h3', {}, 'Its conversions'),
    d.conversions.length ? table(null, CONVERSION_HEAD, conversionRows(d.conversions, tz), { id: 'click-conversions', label: 'The click\'s conversions' }) : el('p', { class: 'muted' }, 'None.'));
}

export async function clicks(root, query, who) {
  const r = range(query);
  const st = { from: r.from, to: r.to, tz: r.tz, smartlink: query.get('smartlink') || '', click: query.get('click') || '' };
  const nav = (next) => go('clicks', { ...st, ...next });
  const title = el('h1', {}, 'Click log');
  const smartlink = el('input', { id: 'log-smartlink', type: 'text', value: st.smartlink, placeholder: 'any', size: 12 });
  root.replaceChildren(title,
    searchForm(st.click, (id) => nav({ click: id })),
    rangeControls(r, nav),
    el('form', { class: 'controls', onsubmit: (e) => { e.preventDefault(); nav({ smartlink: smartlink.value.trim() }); } },
      el('label', { for: 'log-smartlink' }, 'Smartlink'), smartlink, el('button', { type: 'submit', class: 'quiet' }, 'Filter')),
    loading());
  const detail = st.click ? await clickDetail(st.click, r.tz) : null;
  const admin = who.role === 'admin';
  const cursors = [null];
  const holder = el('div', {}, loading());
  const load = async (i) => {
    const p = { ...rangeParams(r), limit: PAGE };
    if (st.smartlink) p.smartlink = st.smartlink;
    if (cursors[i]) p.cursor = cursors[i];
    let page;
    try {
      page = await api('/api/v1/clicks?' + new URLSearchParams(p));
    } catch (e) {
      holder.replaceChildren(errorBox(e));
      return;
    }
    cursors[i + 1] = page.next_cursor;
    const head = ['Click id', 'Time', 'Smartlink', 'Offer', 'Affiliate', 'Country', 'Device', 'OS', 'sub1', 'Quality', 'Reason', ...(admin ? ['IP'] : [])];
    const rows = page.clicks.map((c) => [
      el('a', { href: '#/clicks?' + new URLSearchParams({ ...st, click: c.click_id }), 'data-click': c.click_id, class: 'mono' }, c.click_id),
      fmtTime(c.time_ms, r.tz), c.smartlink, c.offer ?? 'fallback', c.affiliate ?? '–', c.country, c.device, c.os, c.sub1 || '–',
      c.quality, c.reason, ...(admin ? [c.ip || '–'] : [])]);
    const pager = el('div', { class: 'toolbar' },
      el('span', { class: 'muted' }, `Page ${i + 1}: ${page.clicks.length} clicks, newest first`),
      el('span', { class: 'presets' },
        el('button', { type: 'button', class: 'quiet', disabled: i === 0, onclick: () => load(i - 1) }, '‹ Newer'),
        el('button', { type: 'button', class: 'quiet', id: 'older', disabled: !page.next_cursor, onclick: () => load(i + 1) }, 'Older ›')));
    holder.replaceChildren(pager, page.clicks.length ? table(null, head, rows, { id: 'clicks', label: 'Clicks' }) : el('p', { class: 'muted' }, 'No clicks match.'));
  };
  root.lastChild.replaceWith(...[detail, holder].filter(Boolean));
  await load(0);
}

const STATUSES = ['', 'pending', 'approved', 'rejected', 'chargeback'];

export async function conversions(root, query) {
  const r = range(query);
  const status = STATUSES.includes(query.get('status')) ? query.get('status') : '';
  const st = { from: r.from, to: r.to, tz: r.tz, status, click: query.get('click') || '' };
  const nav = (next) => go('conversions', { ...st, ...next });
  const statusSel = el('select', { id: 'conv-status', onchange: (e) => nav({ status: e.target.value }) },
    STATUSES.map((s) => el('option', { value: s, selected: s === status }, s || 'any')));
  root.replaceChildren(el('h1', {}, 'Conversion log'),
    searchForm(st.click, (id) => nav({ click: id })),
    rangeControls(r, nav),
    el('div', { class: 'controls' }, el('label', { for: 'conv-status' }, 'Status'), statusSel),
    loading());
  if (st.click) {
    root.lastChild.replaceWith(await clickDetail(st.click, r.tz));
    return;
  }
  const befores = [null];
  const holder = el('div', {}, loading());
  const load = async (i) => {
    const p = { ...rangeParams(r), limit: PAGE };
    if (status) p.status = status;
    if (befores[i]) p.before = befores[i];
    let page;
    try {
      page = await api('/api/v1/conversions?' + new URLSearchParams(p));
    } catch (e) {
      holder.replaceChildren(errorBox(e));
      return;
    }
    befores[i + 1] = page.next;
    const pager = el('div', { class: 'toolbar' },
      el('span', { class: 'muted' }, `Page ${i + 1}: ${page.conversions.length} conversions, newest first (by arrival)`),
      el('span', { class: 'presets' },
        el('button', { type: 'button', class: 'quiet', disabled: i === 0, onclick: () => load(i - 1) }, '‹ Newer'),
        el('button', { type: 'button', class: 'quiet', disabled: page.next === null || page.next === undefined, onclick: () => load(i + 1) }, 'Older ›')));
    holder.replaceChildren(pager, page.conversions.length
      ? table(null, CONVERSION_HEAD, conversionRows(page.conversions, r.tz), { id: 'conversions', label: 'Conversions' })
      : el('p', { class: 'muted' }, 'No conversions match.'));
  };
  root.lastChild.replaceWith(holder);
  await load(0);
}
