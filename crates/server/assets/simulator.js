// The simulator (admin): pick a bundled scenario or upload or paste a
// scenario file, choose the seed and strategies, run it on the server
// (POST /api/v1/simulations), and read the scores in a table drawn here
// and the simulator's own HTML report (its hourly charts) in a sandboxed
// frame. The report has its own URL and policy: the dashboard's forbids
// the inline styles it is made of (see simulations.rs). The run's id is
// kept in the URL (#/simulator?run=ID), so a reload shows it again while
// the server keeps it (its last ten runs, in memory).

import { api, ApiError } from './api.js';
import { el, fmt, errorBox, table, adminOnly, loading, fmtTime, browserZone } from './util.js';

const STRATEGIES = [
  ['smartlink', 'smartlink (the production router)'],
  ['random', 'random'],
  ['round_robin', 'round robin'],
  ['greedy_epc', 'greedy EPC (best trailing-24 h EPC per segment)'],
];
const OWN = '';
const pct = (v) => `${(v * 100).toFixed(1)}%`;

// `#/simulator?…` without a navigation (the form keeps what was typed).
function setQuery(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  history.replaceState(null, '', `#/simulator${s ? '?' + s : ''}`);
}

function about(s) {
  return `${s.about} ${fmt('clicks', s.duration_hours)} hours, about ${fmt('clicks', s.expected_clicks)} clicks, `
    + `${s.offers} offers, ${s.events} event${s.events === 1 ? '' : 's'}; seed ${s.seed}.`;
}

// A strategy's share of the oracle's expected revenue, from the revenues
// (4 decimals) rather than the ratio (itself rounded to 4 decimals), so
// its percentage rounds as the report's does.
function ofOracle(run, r) {
  const oracle = run.results[0].expected_revenue;
  return oracle > 0 ? r.expected_revenue / oracle : r.oracle_ratio;
}

// The scores, one row per strategy; each number also as data-value.
function scores(run) {
  const cell = (field, v, text) => el('span', { 'data-field': field, 'data-value': v }, text);
  const rows = run.results.map((r) => [
    el('span', { 'data-strategy': r.strategy }, r.strategy),
    cell('expected_revenue', r.expected_revenue, fmt('revenue', r.expected_revenue)),
    cell('oracle_ratio', r.oracle_ratio, pct(ofOracle(run, r))),
    cell('revenue', r.revenue, fmt('revenue', r.revenue)),
    cell('conversions', r.conversions, fmt('conversions', r.conversions)),
    cell('rejected', r.rejected, fmt('conversions', r.rejected)),
    cell('fallback_clicks', r.fallback_clicks, fmt('clicks', r.fallback_clicks)),
  ]);
  return table(`Scores on the same ${fmt('clicks', run.clicks)} clicks`,
    ['Strategy', 'Expected revenue#', '% of oracle#', 'Revenue#', 'Conversions#', 'Rejected#', 'Fallback clicks#'],
    rows, { id: 'sim-scores' });
}

function result(run) {
  const tz = browserZone();
  const name = `“${run.scenario}”, seed ${run.seed}`;
  const parts = [
    el('h2', { id: 'sim-result-title' }, `Scenario ${name}`),
    el('p', { class: 'muted' },
      `${fmt('clicks', run.clicks)} clicks over ${fmt('clicks', run.duration_hours)} hours, ${run.offers.length} offers; `
      + `run ${fmtTime(run.created_ms, tz)} (${tz}) in ${(run.elapsed_ms / 1000).toFixed(1)} s`
      + (run.example ? ` from the bundled ${run.example}.yaml.` : ' from a file sent.')),
    scores(run),
    el('p', { class: 'muted' },
      'Expected revenue sums the true expected value of each offer a strategy chose; % of oracle compares it with the '
      + 'oracle, which knows the true rates, on the same clicks. Revenue is what the simulated advertisers paid.'),
  ];
  if (run.events.length) {
    parts.push(el('h3', {}, 'Events'),
      el('ol', { class: 'events', id: 'sim-events' }, run.events.map((e) => el('li', {}, `hour ${e.at_hour}: ${e.label}`))),
      el('p', { class: 'muted' }, 'The report\'s charts mark them with numbered dashed lines.'));
  }
  parts.push(
    el('h3', {}, 'The report'),
    el('p', {}, el('a', { href: run.report, target: '_blank', rel: 'noopener', id: 'sim-report-link' }, 'Open the report in a new tab'),
      ' (the page smartlink simulate --report writes: hourly % of the oracle, cumulative regret, and where smartlink sent the clicks).'),
    // No script runs in it (the report has none); its own policy says so too.
    el('iframe', { src: run.report, sandbox: '', class: 'sim-report', id: 'sim-report', title: `Simulation report: ${name}` }));
  return el('section', { 'aria-labelledby': 'sim-result-title', 'data-run': run.id }, parts);
}

function recentList(runs, onPick) {
  if (!runs.length) return null;
  const tz = browserZone();
  return el('section', { 'aria-labelledby': 'sim-recent-title' },
    el('h2', { id: 'sim-recent-title' }, 'Recent runs on this server'),
    el('ul', { id: 'sim-recent' }, runs.map((r) => {
      const sl = r.results.find((x) => x.strategy === 'smartlink');
      return el('li', {},
        el('a', { href: `#/simulator?run=${r.id}`, onclick: (e) => { e.preventDefault(); onPick(r); } }, `${r.scenario}, seed ${r.seed}`),
        ` — ${fmtTime(r.created_ms, tz)}${sl ? `, smartlink ${pct(ofOracle(r, sl))} of the oracle` : ''}`);
    })));
}

export async function render(root, query, who) {
  if (adminOnly(root, who, 'Simulator')) return;
  const title = el('h1', {}, 'Simulator');
  root.replaceChildren(title, loading());
  let bundled, kept;
  try {
    [bundled, kept] = await Promise.all([api('/api/v1/scenarios'), api('/api/v1/simulations')]);
  } catch (e) {
    root.lastChild.replaceWith(errorBox(e));
    return;
  }
  const limits = bundled.limits;
  const intro = el('p', { class: 'muted' },
    'Scores the production router and three baseline strategies against an oracle that knows the true conversion rates, '
    + 'on simulated traffic (the scenario format is examples/scenarios/FORMAT.md). Nothing here touches live traffic or data. '
    + `A run here may ask for up to ${fmt('clicks', limits.max_expected_clicks)} clicks, ${fmt('clicks', limits.max_duration_hours)} hours `
    + `and ${limits.max_offers} offers, and takes at most ${limits.time_limit_secs} s; smartlink simulate runs larger ones.`);

  const picked = bundled.scenarios.some((s) => s.name === query.get('scenario')) ? query.get('scenario')
    : (bundled.scenarios[0] ? bundled.scenarios[0].name : OWN);
  const choice = el('select', { id: 'sim-scenario', 'aria-describedby': 'sim-about' },
    bundled.scenarios.map((s) => el('option', { value: s.name, selected: s.name === picked }, `${s.name} (bundled)`)),
    el('option', { value: OWN, selected: picked === OWN }, 'Your own file: upload or paste'));
  const aboutText = el('p', { id: 'sim-about', class: 'muted' });
  const file = el('input', { type: 'file', id: 'sim-file', accept: '.yaml,.yml,.json,application/json,application/yaml,text/yaml,text/plain' });
  const text = el('textarea', { id: 'sim-text', rows: 14, spellcheck: 'false', 'aria-describedby': 'sim-text-hint' });
  const own = el('div', { class: 'field', id: 'sim-own' },
    el('label', { for: 'sim-file' }, 'Scenario file (YAML or JSON)'), file,
    el('label', { for: 'sim-text' }, 'The scenario (upload a file above, or paste or edit it here)'), text,
    el('p', { class: 'muted', id: 'sim-text-hint' }, 'Start from a bundled one: pick it, then choose "Copy it here to edit".'));
  const copy = el('button', { type: 'button', class: 'quiet', id: 'sim-copy' }, 'Copy it here to edit');
  const seed = el('input', { type: 'number', id: 'sim-seed', min: 0, step: 1, inputmode: 'numeric' });
  const checks = STRATEGIES.map(([v, label]) => {
    const id = `sim-s-${v}`;
    return el('span', { class: 'check' }, el('input', { type: 'checkbox', id, value: v, checked: true }), el('label', { for: id }, label));
  });
  const strategyBox = el('fieldset', { class: 'strategies', id: 'sim-strategies' }, el('legend', {}, 'Strategies (the oracle always runs)'), checks);
  const button = el('button', { type: 'submit', id: 'sim-run' }, 'Run simulation');
  const status = el('p', { id: 'sim-status', role: 'status', class: 'muted' });
  const error = el('div', { id: 'sim-error', role: 'alert' });
  const out = el('div', { id: 'sim-result' });

  const current = () => bundled.scenarios.find((s) => s.name === choice.value);
  const showChoice = () => {
    const s = current();
    own.hidden = !!s;
    copy.hidden = !s;
    aboutText.textContent = s ? about(s) : `Up to ${fmt('clicks', limits.max_scenario_bytes / 1024)} KiB of YAML or JSON.`;
    seed.placeholder = s ? `${s.seed} (the file's)` : 'the file\'s';
  };
  choice.addEventListener('change', () => {
    showChoice();
    setQuery({ scenario: choice.value, run: query.get('run') });
  });
  copy.addEventListener('click', () => {
    const s = current();
    if (!s) return;
    text.value = s.text;
    choice.value = OWN;
    showChoice();
    text.focus();
  });
  file.addEventListener('change', async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    error.replaceChildren();
    if (f.size > limits.max_scenario_bytes) {
      error.replaceChildren(errorBox(`${f.name} is ${fmt('clicks', f.size)} bytes; at most ${fmt('clicks', limits.max_scenario_bytes)} here.`));
      return;
    }
    text.value = await f.text();
  });
  showChoice();

  const show = (run) => {
    out.replaceChildren(result(run));
    setQuery({ run: run.id });
  };
  // Marks the inputs an error names (the API's `fields` paths).
  const invalid = (paths) => {
    const mark = (input, bad) => (bad ? input.setAttribute('aria-invalid', 'true') : input.removeAttribute('aria-invalid'));
    mark(text, paths.some((p) => p === 'scenario' || p.startsWith('scenario.')));
    mark(seed, paths.includes('seed'));
  };

  const form = el('form', {
    class: 'sim-form', id: 'sim-form', novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      error.replaceChildren();
      invalid([]);
      const body = { strategies: checks.map((c) => c.querySelector('input')).filter((i) => i.checked).map((i) => i.value) };
      const s = current();
      if (s) body.example = s.name;
      else if (text.value.trim()) body.scenario = text.value;
      else {
        error.replaceChildren(errorBox('Choose a bundled scenario, or upload or paste a scenario file.'));
        invalid(['scenario']);
        text.focus();
        return;
      }
      if (seed.value.trim() !== '') {
        const n = Number(seed.value);
        if (!Number.isSafeInteger(n) || n < 0) {
          error.replaceChildren(errorBox('The seed is a whole number from 0 up.'));
          invalid(['seed']);
          seed.focus();
          return;
        }
        body.seed = n;
      }
      button.disabled = true;
      out.setAttribute('aria-busy', 'true');
      status.textContent = 'Running the simulation… every strategy plays the whole scenario, which takes a few seconds (up to a minute for a large one).';
      try {
        const run = await api('/api/v1/simulations', { method: 'POST', body });
        status.textContent = `Done in ${(run.elapsed_ms / 1000).toFixed(1)} s.`;
        show(run);
        kept = { simulations: [run, ...kept.simulations.filter((r) => r.id !== run.id)] };
        const list = recentList(kept.simulations, show);
        recent.replaceChildren(...(list ? [list] : []));
      } catch (err) {
        status.textContent = '';
        const fields = err instanceof ApiError && Array.isArray(err.body.fields) ? err.body.fields : [];
        error.replaceChildren(errorBox(err));
        invalid(fields.map((f) => f.path));
      } finally {
        button.disabled = false;
        out.removeAttribute('aria-busy');
      }
    },
  },
  el('div', { class: 'controls' }, el('label', { for: 'sim-scenario' }, 'Scenario'), choice, copy),
  aboutText,
  own,
  el('div', { class: 'controls' }, el('label', { for: 'sim-seed' }, 'Seed'), seed),
  strategyBox,
  el('div', { class: 'controls' }, button));

  const recent = el('div', { id: 'sim-recent-box' });
  const list = recentList(kept.simulations, show);
  if (list) recent.append(list);
  root.replaceChildren(title, intro, form, status, error, out, recent);

  const wanted = query.get('run');
  if (wanted) {
    const run = kept.simulations.find((r) => r.id === wanted);
    if (run) out.replaceChildren(result(run));
    else out.replaceChildren(el('p', { class: 'muted' }, 'That run is no longer kept on this server (it keeps its last ten runs, in memory): run it again.'));
  }
}
