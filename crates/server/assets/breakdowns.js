// Breakdowns: the report API grouped by up to four dimensions, filtered,
// sorted by any column, downloadable as CSV; a row drills down to its
// sub1 values. Everything the view shows is in the URL hash.

import { report, reportCsvUrl } from './api.js';
import { el, fmt, range, rangeParams, rangeControls, go, errorBox, DIMENSIONS, FILTERS, COLUMNS } from './util.js';

const MEASURES = ['clicks', 'conversions', 'cr', 'revenue', 'cost', 'profit', 'roi', 'epc'];
const MAX_GROUPS = 4;

function state(query) {
  const r = range(query);
  const groups = (query.get('group_by') || 'offer').split(',').filter((g) => DIMENSIONS.includes(g)).slice(0, MAX_GROUPS);
  const filters = [];
  for (const [k, v] of query) if (k.startsWith('f.') && FILTERS.includes(k.slice(2)) && v) filters.push([k.slice(2), v]);
  return { ...r, groups: groups.length ? groups : ['offer'], filters, sort: query.get('sort') || '-clicks' };
}

function hashParams(st) {
  const p = { from: st.from, to: st.to, tz: st.tz, group_by: st.groups.join(','), sort: st.sort };
  for (const [k, v] of st.filters) p['f.' + k] = v;
  return p;
}

function apiParams(st) {
  const p = { ...rangeParams(st), group_by: st.groups.join(','), sort: st.sort };
  for (const [k, v] of st.filters) p[k] = v;
  return p;
}

function groupPicker(st) {
  const selects = [];
  for (let i = 0; i < MAX_GROUPS; i++) {
    const options = [i === 0 ? null : el('option', { value: '' }, '—'),
      ...DIMENSIONS.map((d) => el('option', { value: d, selected: st.groups[i] === d }, d))];
    selects.push(el('select', { id: `group-${i}`, 'aria-label': `Group by, level ${i + 1}`, 'data-testid': `group-${i}` }, options));
  }
  const apply = () => {
    const groups = [...new Set(selects.map((s) => s.value).filter(Boolean))];
    const sortCol = st.sort.replace(/^-/, '');
    const sort = MEASURES.includes(sortCol) || groups.includes(sortCol) ? st.sort : '-clicks';
    go('breakdowns', hashParams({ ...st, groups, sort }));
  };
  selects.forEach((s) => s.addEventListener('change', apply));
  return el('div', { class: 'controls', role: 'group', 'aria-label': 'Group by' }, el('span', { class: 'label' }, 'Group by'), selects);
}

function filterBar(st) {
  const chips = st.filters.map(([k, v]) => el('span', { class: 'chip' }, `${k} = ${v} `,
    el('button', {
      type: 'button', class: 'quiet', 'aria-label': `Remove filter ${k}`,
      onclick: () => go('breakdowns', hashParams({ ...st, filters: st.filters.filter(([fk]) => fk !== k) })),
    }, '×')));
  const dim = el('select', { id: 'filter-dim', 'aria-label': 'Filter dimension' }, FILTERS.map((f) => el('option', { value: f }, f)));
  const value = el('input', { id: 'filter-value', type: 'text', placeholder: 'e.g. US,CA', 'aria-label': 'Filter values (comma-separated)' });
  const form = el('form', {
    class: 'controls', role: 'search', 'aria-label': 'Filter',
    onsubmit: (e) => {
      e.preventDefault();
      if (!value.value.trim()) return;
      const filters = st.filters.filter(([k]) => k !== dim.value).concat([[dim.value, value.value.trim()]]);
      go('breakdowns', hashParams({ ...st, filters }));
    },
  }, el('span', { class: 'label' }, 'Filter'), dim, value, el('button', { type: 'submit' }, 'Add filter'), chips);
  return form;
}

function header(st, col) {
  const current = st.sort.replace(/^-/, '');
  const desc = st.sort.startsWith('-');
  const sorted = current === col;
  const next = sorted && desc ? col : '-' + col;
  const label = COLUMNS[col] ? COLUMNS[col].label : col;
  return el('th', { scope: 'col', 'aria-sort': sorted ? (desc ? 'descending' : 'ascending') : null, class: MEASURES.includes(col) ? 'num' : null },
    el('button', { type: 'button', class: 'sort', onclick: () => go('breakdowns', hashParams({ ...st, sort: next })) },
      label, sorted ? (desc ? ' ▼' : ' ▲') : ''));
}

export async function render(root, query) {
  const st = state(query);
  const csv = el('a', { href: reportCsvUrl(apiParams(st)), download: 'report.csv', class: 'button', id: 'csv' }, 'Download CSV');
  root.replaceChildren(
    el('h1', {}, 'Breakdowns'),
    rangeControls(st, (r) => go('breakdowns', hashParams({ ...st, ...r }))),
    groupPicker(st),
    filterBar(st),
    el('p', { class: 'loading' }, 'Loading…'));
  let data;
  try {
    data = await report(apiParams(st));
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const canDrill = !st.groups.includes('sub1') && !st.filters.some(([k]) => k === 'sub1');
  // A row without a value (e.g. clicks that reached no offer) cannot be a filter.
  const drillable = (row) => st.groups.every((g) => row[g] !== null && row[g] !== undefined);
  const rows = data.rows.map((row) => el('tr', {},
    st.groups.map((g, i) => el(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row' } : {}, row[g] === null || row[g] === undefined ? '(none)' : String(row[g]))),
    MEASURES.map((m) => el('td', { class: 'num' }, fmt(m, row[m]))),
    canDrill ? el('td', {}, drillable(row) && el('button', {
      type: 'button', class: 'quiet drill',
      'aria-label': `Sub1 values of ${st.groups.map((g) => row[g]).join(', ')}`,
      onclick: () => {
        const filters = st.filters.filter(([k]) => !st.groups.includes(k)).concat(st.groups.filter((g) => FILTERS.includes(g)).map((g) => [g, String(row[g])]));
        go('breakdowns', hashParams({ ...st, groups: ['sub1'], filters, sort: '-clicks' }));
      },
    }, 'sub1 ›')) : null));
  const total = el('tr', { class: 'total' },
    el('th', { scope: 'row', colspan: st.groups.length }, 'Total'),
    MEASURES.map((m) => el('td', { class: 'num', 'data-total': m }, fmt(m, data.totals[m]))),
    canDrill ? el('td') : null);
  const table = el('table', { id: 'breakdown' },
    el('caption', {}, `By ${st.groups.join(', ')}, ${st.from} to ${st.to} (${st.tz})`),
    el('thead', {}, el('tr', {}, st.groups.map((g) => header(st, g)), MEASURES.map((m) => header(st, m)),
      canDrill ? el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, 'Drill down')) : null)),
    el('tbody', {}, rows),
    el('tfoot', {}, total));
  root.lastChild.replaceWith(
    el('div', { class: 'toolbar' }, el('span', { class: 'muted' }, `${data.rows.length} rows`), csv),
    data.rows.length ? el('div', { class: 'scroll' }, table) : el('p', { class: 'muted' }, 'No clicks match.'));
}
