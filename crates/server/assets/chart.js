// Charts as inline SVG: clicks as bars (left axis) and revenue as a line
// (right axis) per day. No library; every mark has a <title> for hover
// and screen readers, and the page shows the same numbers in a table.

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, ...children) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// A "nice" axis maximum: 1, 2 or 5 times a power of ten, at least `v`.
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// points: [{label, bars, line}]; names: {bars, line}; fmt: {bars, line}.
export function barLineChart(points, names, fmt, title) {
  const W = 720, H = 260, L = 56, R = 64, T = 16, B = 40;
  const w = W - L - R, h = H - T - B;
  const maxBar = niceMax(Math.max(0, ...points.map((p) => p.bars)));
  const maxLine = niceMax(Math.max(0, ...points.map((p) => p.line)));
  const n = Math.max(points.length, 1);
  const step = w / n;
  const x = (i) => L + step * i + step / 2;
  const yBar = (v) => T + h - (v / maxBar) * h;
  const yLine = (v) => T + h - (v / maxLine) * h;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  // Grid and both axes' labels.
  for (let i = 0; i <= 4; i++) {
    const y = T + (h * i) / 4;
    svg.append(s('line', { x1: L, x2: L + w, y1: y, y2: y, class: 'grid' }));
    svg.append(s('text', { x: L - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, fmt.bars(maxBar * (1 - i / 4))));
    svg.append(s('text', { x: L + w + 6, y: y + 4, class: 'axis line-axis' }, fmt.line(maxLine * (1 - i / 4))));
  }
  const every = Math.ceil(n / 10);
  points.forEach((p, i) => {
    const bw = Math.max(2, step * 0.6);
    const y = yBar(p.bars);
    const bar = s('rect', { x: x(i) - bw / 2, y, width: bw, height: T + h - y, class: 'bar' });
    bar.append(s('title', {}, `${p.label}: ${fmt.bars(p.bars)} ${names.bars}, ${fmt.line(p.line)} ${names.line}`));
    svg.append(bar);
    if (i % every === 0) {
      svg.append(s('text', { x: x(i), y: H - B + 16, class: 'axis', 'text-anchor': 'middle' }, p.label.slice(5)));
    }
  });
  if (points.length) {
    const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${yLine(p.line).toFixed(1)}`).join(' ');
    svg.append(s('path', { d, class: 'line' }));
    points.forEach((p, i) => svg.append(s('circle', { cx: x(i), cy: yLine(p.line), r: 3, class: 'dot' })));
  }
  // Legend.
  svg.append(s('rect', { x: L, y: H - 14, width: 10, height: 10, class: 'bar legend' }));
  svg.append(s('text', { x: L + 14, y: H - 5, class: 'axis' }, `${names.bars} (left)`));
  svg.append(s('line', { x1: L + 180, x2: L + 200, y1: H - 9, y2: H - 9, class: 'line' }));
  svg.append(s('text', { x: L + 204, y: H - 5, class: 'axis' }, `${names.line} (right)`));
  return svg;
}

// Colours of chart series, told apart by more than hue: every series is
// also named in the legend, its tooltip and the table under the chart.
export const PALETTE = ['#1f77b4', '#d9480f', '#2b8a3e', '#7048e8', '#c2255c', '#0b7285', '#8d6e00', '#495057', '#5c940d', '#862e9c'];
export const FALLBACK_COLOUR = '#adb5bd';

// Event lines on a time axis: a dashed vertical line per event at
// x(event), numbered 1, 2, … above the plot (the page lists them by
// number). Events closer than a marker's width share one line, labelled
// with their range of numbers ("3–5").
function eventLines(svg, events, x, top, bottom) {
  const placed = events.map((ev, i) => ({ ev, n: i + 1, x: x(ev) })).filter((p) => p.x !== null).sort((a, b) => a.x - b.x || a.n - b.n);
  const groups = [];
  for (const p of placed) {
    const g = groups[groups.length - 1];
    if (g && p.x - g[0].x < 16) g.push(p);
    else groups.push([p]);
  }
  for (const g of groups) {
    const ex = g[0].x;
    const nums = g.map((p) => p.n);
    const first = Math.min(...nums);
    const last = Math.max(...nums);
    const label = first === last ? String(first) : `${first}–${last}`;
    const w = Math.max(14, label.length * 6.5 + 8);
    const el = s('g', { class: 'event' });
    el.append(s('title', {}, g.map((p) => `${p.n}. ${p.ev.label}`).join('\n')));
    el.append(s('line', { x1: ex, x2: ex, y1: top - 2, y2: bottom, class: 'event-line' }));
    el.append(s('rect', { x: ex - w / 2, y: top - 15, width: w, height: 14, rx: 7, class: 'event-dot' }));
    el.append(s('text', { x: ex, y: top - 4.5, class: 'event-num', 'text-anchor': 'middle' }, label));
    svg.append(el);
  }
}

// The series' names and colours, as an HTML list under a chart (it
// wraps on a narrow screen, where text inside the SVG would shrink).
export function legendList(series) {
  const ul = document.createElement('ul');
  ul.className = 'legend';
  for (const se of series) {
    const li = document.createElement('li');
    const sw = s('svg', { viewBox: '0 0 10 10', class: 'swatch', 'aria-hidden': 'true' });
    sw.append(s('rect', { width: 10, height: 10, fill: se.colour }));
    li.append(sw, document.createTextNode(se.name));
    ul.append(li);
  }
  return ul;
}

// days: ['YYYY-MM-DD', …]; series: [{name, colour, values: [share per day]}]
// (shares of the day's clicks, 0..1, stacked); events: [{day index +
// fraction `at`, label}].
export function stackedShareChart(days, series, events, title) {
  const W = 720, L = 48, R = 16, T = 28, B = 28;
  const H = 240 + B;
  const w = W - L - R, h = H - T - B;
  const n = Math.max(days.length, 1);
  const step = w / n;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  for (let i = 0; i <= 4; i++) {
    const y = T + (h * i) / 4;
    svg.append(s('line', { x1: L, x2: L + w, y1: y, y2: y, class: 'grid' }));
    svg.append(s('text', { x: L - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, `${100 - i * 25}%`));
  }
  const every = Math.ceil(n / 10);
  days.forEach((d, i) => {
    const bw = Math.max(2, step * 0.7);
    const x0 = L + step * i + (step - bw) / 2;
    let acc = 0;
    for (const se of series) {
      const v = se.values[i] || 0;
      if (v <= 0) continue;
      const y = T + h - (acc + v) * h;
      const r = s('rect', { x: x0, y, width: bw, height: v * h, fill: se.colour, class: 'stack' });
      r.append(s('title', {}, `${d}: ${se.name} ${(v * 100).toFixed(1)}% of clicks`));
      svg.append(r);
      acc += v;
    }
    if (i % every === 0) svg.append(s('text', { x: L + step * i + step / 2, y: T + h + 16, class: 'axis', 'text-anchor': 'middle' }, d.slice(5)));
  });
  eventLines(svg, events, (ev) => (ev.at === null ? null : L + step * ev.at), T, T + h);
  return svg;
}

// Lines per series over days (null = no clicks that day: a gap), with
// event lines; fmt formats the axis values.
export function lineChart(days, series, events, title, fmt) {
  const W = 720, L = 56, R = 16, T = 28, B = 28;
  const H = 220 + B;
  const w = W - L - R, h = H - T - B;
  const n = Math.max(days.length, 1);
  const step = w / n;
  const max = niceMax(Math.max(0, ...series.flatMap((se) => se.values.filter((v) => v !== null))));
  const x = (i) => L + step * i + step / 2;
  const y = (v) => T + h - (v / max) * h;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  for (let i = 0; i <= 4; i++) {
    const yy = T + (h * i) / 4;
    svg.append(s('line', { x1: L, x2: L + w, y1: yy, y2: yy, class: 'grid' }));
    svg.append(s('text', { x: L - 6, y: yy + 4, class: 'axis', 'text-anchor': 'end' }, fmt(max * (1 - i / 4))));
  }
  const every = Math.ceil(n / 10);
  days.forEach((d, i) => {
    if (i % every === 0) svg.append(s('text', { x: x(i), y: T + h + 16, class: 'axis', 'text-anchor': 'middle' }, d.slice(5)));
  });
  for (const se of series) {
    let d = '';
    let pen = false;
    se.values.forEach((v, i) => {
      if (v === null) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = true;
    });
    if (d) svg.append(s('path', { d: d.trim(), class: 'series', stroke: se.colour }));
    se.values.forEach((v, i) => {
      if (v === null) return;
      const c = s('circle', { cx: x(i), cy: y(v), r: 3, fill: se.colour });
      c.append(s('title', {}, `${days[i]}: ${se.name} ${fmt(v)}`));
      svg.append(c);
    });
  }
  eventLines(svg, events, (ev) => (ev.at === null ? null : L + step * ev.at), T, T + h);
  return svg;
}

// A waterfall: the start value, each part as a bar floating from the
// running total (up or down), and the end value. steps: [{label, value}];
// start/end: {label, value}. fmt formats values.
export function waterfallChart(start, steps, end, title, fmt) {
  const W = 720, L = 64, R = 16, T = 16, B = 56;
  const H = 280;
  const w = W - L - R, h = H - T - B;
  const bars = [{ ...start, from: 0, to: start.value, kind: 'total' }];
  let run = start.value;
  for (const st of steps) {
    bars.push({ ...st, from: run, to: run + st.value, kind: st.value >= 0 ? 'up' : 'down' });
    run += st.value;
  }
  bars.push({ ...end, from: 0, to: end.value, kind: 'total' });
  const values = bars.flatMap((b) => [b.from, b.to]);
  const hi = niceMax(Math.max(0, ...values));
  const lo = Math.min(0, ...values) < 0 ? -niceMax(-Math.min(0, ...values)) : 0;
  const y = (v) => T + h - ((v - lo) / (hi - lo)) * h;
  const step = w / bars.length;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  for (let i = 0; i <= 4; i++) {
    const v = hi - ((hi - lo) * i) / 4;
    svg.append(s('line', { x1: L, x2: L + w, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: L - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, fmt(v)));
  }
  svg.append(s('line', { x1: L, x2: L + w, y1: y(0), y2: y(0), class: 'zero' }));
  bars.forEach((b, i) => {
    const bw = step * 0.6;
    const x0 = L + step * i + (step - bw) / 2;
    const top = y(Math.max(b.from, b.to));
    const height = Math.max(1, Math.abs(y(b.from) - y(b.to)));
    const r = s('rect', { x: x0, y: top, width: bw, height, class: `wf ${b.kind}` });
    const sign = b.kind === 'total' ? '' : b.value >= 0 ? '+' : '';
    r.append(s('title', {}, `${b.label}: ${sign}${fmt(b.value)}`));
    svg.append(r);
    if (i < bars.length - 1) {
      const next = L + step * (i + 1) + (step - bw) / 2;
      svg.append(s('line', { x1: x0 + bw, x2: next, y1: y(b.to), y2: y(b.to), class: 'wf-link' }));
    }
    svg.append(s('text', { x: x0 + bw / 2, y: top - 4, class: 'axis', 'text-anchor': 'middle' }, `${sign}${fmt(b.value)}`));
    // One word a line; `dy` in em keeps the lines apart at any font size.
    const label = s('text', { x: x0 + bw / 2, y: T + h + 16, class: 'axis', 'text-anchor': 'middle' });
    b.label.split(' ').forEach((word, j) => label.append(s('tspan', { x: x0 + bw / 2, dy: j ? '1.1em' : 0 }, word)));
    svg.append(label);
  });
  return svg;
}

// Confidence intervals side by side: rows [{label, value, lo, hi, kind}]
// on one horizontal axis (a forest plot); `ref` draws a vertical line.
export function intervalChart(rows, title, fmt, ref) {
  const W = 720, L = 230, R = 24, T = 8, rowH = 26;
  const H = T + rows.length * rowH + 28;
  const w = W - L - R;
  const all = rows.flatMap((r) => [r.lo, r.hi, r.value]).filter((v) => v !== null && v !== undefined);
  if (ref !== undefined) all.push(ref);
  let lo = Math.min(0, ...all);
  let hi = Math.max(0, ...all);
  if (hi - lo <= 0) hi = lo + 1;
  const pad = (hi - lo) * 0.05;
  lo -= pad;
  hi += pad;
  const x = (v) => L + ((v - lo) / (hi - lo)) * w;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    svg.append(s('line', { x1: x(v), x2: x(v), y1: T, y2: H - 22, class: 'grid' }));
    svg.append(s('text', { x: x(v), y: H - 8, class: 'axis', 'text-anchor': 'middle' }, fmt(v)));
  }
  if (ref !== undefined && ref !== null) svg.append(s('line', { x1: x(ref), x2: x(ref), y1: T, y2: H - 22, class: 'zero' }));
  rows.forEach((r, i) => {
    const cy = T + i * rowH + rowH / 2;
    svg.append(s('text', { x: L - 8, y: cy + 4, class: 'axis', 'text-anchor': 'end' }, r.label.length > 28 ? r.label.slice(0, 27) + '…' : r.label));
    if (r.value === null || r.value === undefined) return;
    const g = s('g', { class: `ci ${r.kind || ''}` });
    g.append(s('title', {}, `${r.label}: ${fmt(r.value)}${r.lo !== null && r.lo !== undefined ? ` (95% CI ${fmt(r.lo)} to ${fmt(r.hi)})` : ''}`));
    if (r.lo !== null && r.lo !== undefined) g.append(s('line', { x1: x(r.lo), x2: x(r.hi), y1: cy, y2: cy, class: 'ci-line' }));
    g.append(s('circle', { cx: x(r.value), cy, r: 4.5, class: 'ci-dot' }));
    svg.append(g);
  });
  return svg;
}
