// End-to-end tests of the dashboard in a real browser (Debian's chromium
// through playwright-core). Started by run.sh with SMARTLINK_BASE (the
// server, running examples/demo.yaml) and SMARTLINK_TOKEN (its admin token).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.SMARTLINK_BASE;
const ADMIN = process.env.SMARTLINK_TOKEN;
const SHOTS = process.env.SCREENSHOTS || 'target/browser-screenshots';
const KEYS = { aff1: 'browser-key-aff1-0123456789', aff2: 'browser-key-aff2-0123456789' };
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1';
const DESKTOP = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
// Postback tokens of the demo's advertisers, by offer URL host.
const POSTBACK = { 'sweeps.example': 'change-me-sweeps', 'dating.example': 'change-me-dating', 'apps.example': 'change-me-apps' };

let browser;
const problems = []; // console errors, page errors, requests elsewhere

async function api(path, { token = ADMIN, method = 'GET', body } = {}) {
  const r = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return path.includes('format=csv') ? text : JSON.parse(text);
}

function utcDate(offsetDays = 0) {
  return new Date(Date.now() + offsetDays * 86400000).toISOString().slice(0, 10);
}
const TO = utcDate(0);
const FROM = utcDate(-6);
const AFTER = utcDate(1);

async function newPage(opts = {}) {
  const context = await browser.newContext({ timezoneId: 'UTC', locale: 'en-US', acceptDownloads: true, ...opts });
  const page = await context.newPage();
  context.on('request', (req) => {
    const u = new URL(req.url());
    if (u.protocol !== 'data:' && u.hostname !== '127.0.0.1') problems.push(`request to ${req.url()}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !page.expectedErrors) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return page;
}

async function signIn(page, token) {
  await page.goto(BASE + '/');
  await page.locator('#token').fill(token);
  await page.locator('#token').press('Enter');
  await page.locator('#top').waitFor({ state: 'visible' });
}

async function axe(page, name) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join('; ')})`), [], `${name}: accessibility`);
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function kpis(page) {
  await page.locator('[data-metric="clicks"]').waitFor();
  return page.evaluate(() => Object.fromEntries([...document.querySelectorAll('[data-metric]')]
    .map((e) => [e.dataset.metric, e.dataset.value === '' ? null : Number(e.dataset.value)])));
}

before(async () => {
  assert.ok(BASE && ADMIN, 'run through tests/browser/run.sh');
  // Affiliate keys, clicks on two affiliates' links, and postbacks.
  for (const [aff, key] of Object.entries(KEYS)) await api(`/api/v1/affiliates/${aff}`, { method: 'PATCH', body: { api_key: key } });
  let sent = 0;
  let converted = 0;
  for (let i = 0; i < 24; i++) {
    const slug = i % 3 === 2 ? 'mobile-apps' : 'global';
    const ua = i % 2 ? DESKTOP : IPHONE;
    const r = await fetch(`${BASE}/s/${slug}?sub1=b${i % 5}&sub2=run${i}`, {
      redirect: 'manual', headers: { 'User-Agent': ua, Accept: 'text/html', 'Accept-Language': 'en-US' },
    });
    // mobile-apps blocks what it judges a bot: many clicks from one address.
    assert.ok(r.status === 302 || (slug === 'mobile-apps' && r.status === 403), `click ${i}: ${r.status}`);
    sent++;
    if (r.status !== 302) continue;
    const loc = new URL(r.headers.get('location'));
    const id = ['clickid', 'cid', 'click'].map((p) => loc.searchParams.get(p)).find(Boolean);
    if (id && POSTBACK[loc.hostname] && i % 2 === 0) {
      const pb = await fetch(`${BASE}/postback?click_id=${id}&txid=t${i}&token=${POSTBACK[loc.hostname]}`);
      if (pb.ok) converted++;
    }
  }
  assert.ok(converted >= 3, `only ${converted} conversions`);
  // Clicks reach reports through the journal: wait for all of them.
  const deadline = Date.now() + 30000;
  for (;;) {
    const metrics = await (await fetch(`${BASE}/metrics`)).text();
    const written = Number((metrics.match(/^smartlink_clicks_written_total (\d+)/m) || [])[1] || 0);
    if (written >= sent) break;
    assert.ok(Date.now() < deadline, `only ${written} of ${sent} clicks stored`);
    await new Promise((f) => setTimeout(f, 200));
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close();
  assert.deepEqual(problems, [], 'console errors or requests off 127.0.0.1');
});

test('the admin signs in and the overview shows the API\'s numbers', async () => {
  const page = await newPage();
  await page.goto(BASE + '/');
  await page.locator('#token').waitFor();
  await axe(page, 'sign-in');
  await shot(page, 'sign-in');
  // A wrong token: the form says so (the browser logs the 401 itself).
  page.expectedErrors = true;
  await page.locator('#token').fill('not-the-token');
  await page.locator('#token').press('Enter');
  await page.locator('#signin-error').filter({ hasText: /neither/ }).waitFor();
  page.expectedErrors = false;
  await page.locator('#token').fill(ADMIN);
  await page.locator('#token').press('Enter');
  await page.locator('#top').waitFor({ state: 'visible' });

  // The default view (last 7 days in the browser's zone, UTC here).
  const shown = await kpis(page);
  const api7 = (await api(`/api/v1/report?from=${FROM}&to=${AFTER}&tz=UTC`)).totals;
  for (const m of ['clicks', 'conversions', 'revenue', 'cost', 'profit', 'epc', 'roi']) {
    assert.equal(shown[m], api7[m], `${m}: page ${shown[m]}, API ${api7[m]}`);
  }
  assert.ok(shown.clicks > 0 && shown.revenue > 0, JSON.stringify(shown));
  assert.equal(await page.locator('svg.chart rect.bar:not(.legend)').count(), 7, 'one bar a day');
  // Today's bar carries today's clicks.
  const daily = await api(`/api/v1/report?from=${FROM}&to=${AFTER}&tz=UTC&group_by=day`);
  const todayRow = daily.rows.find((r) => r.day === TO);
  assert.ok(todayRow, JSON.stringify(daily.rows));
  const lastTitle = await page.locator('svg.chart rect.bar:not(.legend)').last().locator('title').textContent();
  assert.ok(lastTitle.startsWith(`${TO}: ${todayRow.clicks} clicks`), lastTitle);
  await axe(page, 'overview');
  await shot(page, 'overview');

  // Another range, from the URL: the previous period is compared.
  await page.goto(`${BASE}/#/overview?from=${TO}&to=${TO}&tz=UTC`);
  await page.locator('[data-metric="clicks"] .kpi-compare').filter({ hasText: 'previous 1 days' }).waitFor();
  const one = await kpis(page);
  const api1 = (await api(`/api/v1/report?from=${TO}&to=${AFTER}&tz=UTC`)).totals;
  assert.equal(one.clicks, api1.clicks);
  assert.equal(one.revenue, api1.revenue);

  // A phone.
  const phone = await newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await signIn(phone, ADMIN);
  await kpis(phone);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px on a phone`);
  await shot(phone, 'overview-phone');
  await phone.context().close();
  await page.context().close();
});

test('breakdowns: group-by, sorting, CSV and drill-down match the API', async () => {
  const page = await newPage();
  await signIn(page, ADMIN);
  await page.getByRole('link', { name: 'Breakdowns' }).click();
  await page.locator('#breakdown').waitFor();
  await page.locator('[data-testid="group-0"]').selectOption('smartlink');
  await page.locator('#breakdown caption').filter({ hasText: 'By smartlink,' }).waitFor();
  await page.locator('[data-testid="group-1"]').selectOption('offer');
  await page.locator('#breakdown caption').filter({ hasText: 'By smartlink, offer' }).waitFor();
  const q = `from=${FROM}&to=${AFTER}&tz=UTC&group_by=smartlink,offer&sort=-clicks`;
  const rep = await api(`/api/v1/report?${q}`);
  assert.equal(await page.locator('#breakdown tbody tr').count(), rep.rows.length);
  const totalClicks = await page.locator('#breakdown tfoot [data-total="clicks"]').textContent();
  assert.equal(Number(totalClicks.replace(/,/g, '')), rep.totals.clicks);
  const firstRow = await page.locator('#breakdown tbody tr').first().locator('th, td').allTextContents();
  assert.deepEqual(firstRow.slice(0, 2), [rep.rows[0].smartlink, rep.rows[0].offer]);

  // Sorting by a column header, then back.
  await page.getByRole('button', { name: /^Clicks/ }).click();
  await page.locator('th[aria-sort="ascending"]').waitFor();
  const asc = await api(`/api/v1/report?${q.replace('sort=-clicks', 'sort=clicks')}`);
  const firstAsc = await page.locator('#breakdown tbody tr').first().locator('th, td').allTextContents();
  assert.deepEqual(firstAsc.slice(0, 2), [asc.rows[0].smartlink, asc.rows[0].offer]);
  await axe(page, 'breakdowns');
  await shot(page, 'breakdowns');

  // The CSV download is the API's CSV.
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#csv').click()]);
  const csv = readFileSync(await download.path(), 'utf8');
  assert.equal(csv, await api(`/api/v1/report?${q.replace('sort=-clicks', 'sort=clicks')}&format=csv`));

  // Drill-down: a row's sub1 values.
  // (A row without an offer, clicks that reached none, cannot be drilled.)
  const idx = asc.rows.findIndex((r) => r.smartlink !== null && r.offer !== null);
  const row = asc.rows[idx];
  await page.locator('#breakdown tbody tr').nth(idx).locator('button.drill').click();
  await page.locator('#breakdown caption').filter({ hasText: 'By sub1,' }).waitFor();
  assert.match(page.url(), /group_by=sub1/);
  const subs = await api(`/api/v1/report?from=${FROM}&to=${AFTER}&tz=UTC&group_by=sub1&smartlink=${row.smartlink}&offer=${row.offer}`);
  assert.equal(await page.locator('#breakdown tbody tr').count(), subs.rows.length);
  assert.equal(await page.locator('.chip').count(), 2, 'the row\'s smartlink and offer are now filters');
  await shot(page, 'breakdowns-sub1');
  await page.context().close();
});

test('an offer\'s payout and status change through the form', async () => {
  const page = await newPage();
  await signIn(page, ADMIN);
  await page.getByRole('link', { name: 'Offers' }).click();
  await page.locator('#offers').waitFor();
  await axe(page, 'offers');
  await page.getByRole('link', { name: 'vpn-app' }).click();
  await page.getByLabel(/Payout/).waitFor();
  // An invalid payout: the API's message next to the field.
  page.expectedErrors = true;
  await page.getByLabel(/Payout/).fill('-5');
  await page.getByRole('button', { name: 'Save payout' }).click();
  await page.locator('[data-field-error="payout"]').filter({ hasText: /./ }).waitFor();
  page.expectedErrors = false;
  assert.equal((await api('/api/v1/offers/vpn-app')).payout, 1.1);
  await axe(page, 'offer-edit-error');
  await shot(page, 'offer-edit-error');
  await page.getByLabel(/Payout/).fill('1.75');
  await page.getByRole('button', { name: 'Save payout' }).click();
  await page.locator('#form-status').filter({ hasText: 'Payout saved' }).waitFor();
  assert.equal((await api('/api/v1/offers/vpn-app')).payout, 1.75);
  await page.getByRole('button', { name: 'Pause offer' }).click();
  await page.getByRole('button', { name: 'Resume offer' }).waitFor();
  assert.equal((await api('/api/v1/offers/vpn-app')).status, 'paused');
  await page.getByRole('button', { name: 'Resume offer' }).click();
  await page.getByRole('button', { name: 'Pause offer' }).waitFor();
  assert.equal((await api('/api/v1/offers/vpn-app')).status, 'active');
  await shot(page, 'offer-edit');
  // Signing out ends the session.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#signin').waitFor({ state: 'visible' });
  const after = await page.evaluate(async () => (await fetch('/ui/session')).status);
  assert.equal(after, 204);
  await page.context().close();
});

test('an affiliate sees only its own links and money', async () => {
  const page = await newPage();
  await signIn(page, KEYS.aff1);
  assert.equal(await page.locator('#who').textContent(), 'Affiliate aff1');
  assert.equal(await page.getByRole('link', { name: 'Offers' }).count(), 0, 'no Offers page');
  const shown = await kpis(page);
  const mine = (await api(`/api/v1/report?from=${FROM}&to=${AFTER}&tz=UTC`, { token: KEYS.aff1 })).totals;
  const all = (await api(`/api/v1/report?from=${FROM}&to=${AFTER}&tz=UTC`)).totals;
  assert.equal(shown.clicks, mine.clicks);
  assert.equal(shown.revenue, mine.revenue);
  assert.ok(shown.clicks < all.clicks, 'fewer clicks than the admin sees');
  await axe(page, 'overview-affiliate');
  await shot(page, 'overview-affiliate');
  await page.goto(`${BASE}/#/breakdowns?from=${FROM}&to=${TO}&tz=UTC&group_by=smartlink`);
  await page.locator('#breakdown caption').filter({ hasText: 'By smartlink,' }).waitFor();
  const links = await page.locator('#breakdown tbody th').allTextContents();
  assert.deepEqual(links, ['global'], 'aff1 owns only global');
  // Asking the API for another affiliate's data from the page gets its own.
  page.expectedErrors = true;
  const probe = await page.evaluate(async () => {
    const r = await fetch('/api/v1/report?affiliate=aff2&group_by=smartlink');
    const offers = await fetch('/api/v1/offers');
    return { rows: (await r.json()).rows.map((x) => x.smartlink), offers: offers.status };
  });
  page.expectedErrors = false;
  assert.deepEqual(probe, { rows: ['global'], offers: 403 });
  await page.context().close();

  const other = await newPage();
  await signIn(other, KEYS.aff2);
  await other.goto(`${BASE}/#/breakdowns?from=${FROM}&to=${TO}&tz=UTC&group_by=smartlink`);
  await other.locator('#breakdown caption').filter({ hasText: 'By smartlink,' }).waitFor();
  assert.deepEqual(await other.locator('#breakdown tbody th').allTextContents(), ['mobile-apps']);
  await other.context().close();
});
