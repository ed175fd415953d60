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
