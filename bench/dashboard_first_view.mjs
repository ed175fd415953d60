// First-view time of the dashboard's pages against a running server (issue
// 18: "first view < 1 s with 10 M clicks in the store"), in Debian's
// chromium through playwright-core (tests/browser's node_modules).
//
//   SMARTLINK_BASE=http://127.0.0.1:8080 SMARTLINK_TOKEN=… \
//     node bench/dashboard_first_view.mjs [rounds]
//
// Signs in once, then for each view loads the page afresh (a full
// navigation: HTML, modules, API calls) `rounds` times [5] and prints the
// first (cold: the server's caches and DuckDB's buffers as they are) and
// the median of all, in ms, from the navigation's start until the view's
// marker element is shown and no request is in flight. docs/benchmarks.md
// has the method and the figures.

import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const BASE = process.env.SMARTLINK_BASE;
const TOKEN = process.env.SMARTLINK_TOKEN;
const ROUNDS = Number(process.argv[2] || 5);
if (!BASE || !TOKEN) {
  console.error('set SMARTLINK_BASE and SMARTLINK_TOKEN');
  process.exit(2);
}

function day(offset, to) {
  return new Date(to + offset * 86400000).toISOString().slice(0, 10);
}

// The newest click decides "today" (report_load fills up to its own now).
async function lastClickDay() {
  const r = await fetch(`${BASE}/api/v1/clicks?limit=1`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  const page = await r.json();
  const ts = page.clicks?.[0]?.ts_ms ?? page.items?.[0]?.ts_ms ?? Date.now();
  return ts;
}

const now = await lastClickDay();
const to = day(0, now);
const from30 = day(-29, now);
const VIEWS = [
  ['overview, last 7 days (the first view)', `#/overview?to=${to}&tz=UTC`, '[data-metric="clicks"]'],
  ['overview, 30 days', `#/overview?from=${from30}&to=${to}&tz=UTC`, '[data-metric="clicks"]'],
  ['breakdowns by offer, 30 days', `#/breakdowns?from=${from30}&to=${to}&tz=UTC&group_by=offer`, '.toolbar'],
  ['breakdowns os x browser, 30 days', `#/breakdowns?from=${from30}&to=${to}&tz=UTC&group_by=os,browser`, '.toolbar'],
  ['traffic of sl1, 30 days', '#/traffic?smartlink=sl1&period=30d', 'svg.chart'],
];

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium' });
const context = await browser.newContext({ timezoneId: 'UTC', locale: 'en-US' });
const page = await context.newPage();
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));
page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
await page.goto(BASE + '/');
await page.locator('#token').fill(TOKEN);
await page.locator('#token').press('Enter');
await page.locator('#top').waitFor({ state: 'visible' });

let inflight = 0;
let lastDone = 0;
const done = () => {
  inflight--;
  lastDone = Date.now();
};
page.on('request', () => inflight++);
page.on('requestfinished', done);
page.on('requestfailed', done);

async function idle() {
  // No request in flight for 50 ms.
  for (let quiet = 0; quiet < 5; ) {
    await page.waitForTimeout(10);
    quiet = inflight === 0 ? quiet + 1 : 0;
  }
}

console.log(`dashboard first view at ${BASE}, ${ROUNDS} rounds, ms (first / median)`);
for (const [name, hash, marker] of VIEWS) {
  const times = [];
  for (let i = 0; i < ROUNDS; i++) {
    await page.goto('about:blank');
    inflight = 0;
    const t0 = Date.now();
    await page.goto(`${BASE}/ui/${hash}`);
    await page.locator(marker).first().waitFor({ state: 'visible', timeout: 60000 });
    const shown = Date.now();
    await idle();
    // Shown, and the last request (e.g. a chart's data) answered.
    times.push(Math.max(shown, lastDone) - t0);
  }
  const sorted = [...times].sort((a, b) => a - b);
  console.log(`${name.padEnd(40)} ${String(times[0]).padStart(6)} ${String(sorted[Math.floor(sorted.length / 2)]).padStart(6)}`);
}
if (errors.length) {
  console.error('page errors:', errors);
  process.exitCode = 1;
}
await browser.close();
