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
const LAB_CLICKS = 240;

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
  // The audit's lab: a weighted smartlink over two offers at the same
  // payout, one converting every click and one never, and 240 US desktop
  // visitors from as many addresses: the audit recommends the first.
  for (const id of ['lab-a', 'lab-b']) {
    await api('/api/v1/offers', { method: 'POST', body: { id, advertiser: 'adv-apps', url: `https://apps.example/${id}?click={click_id}`, payout: 2 } });
  }
  await api('/api/v1/smartlinks', { method: 'POST', body: { slug: 'lab', offers: ['lab-a', 'lab-b'], strategy: 'weighted', weights: [1, 1], fallback_url: 'https://fallback.example/lab' } });
  for (let i = 0; i < LAB_CLICKS; i++) {
    const r = await fetch(`${BASE}/s/lab?sub1=l${i % 7}`, {
      redirect: 'manual',
      headers: { 'User-Agent': DESKTOP, Accept: 'text/html', 'Accept-Language': 'en-US', 'X-Forwarded-For': `203.0.113.${i + 1}`, 'CF-IPCountry': 'US' },
    });
    assert.equal(r.status, 302, `lab click ${i}`);
    sent++;
    const loc = new URL(r.headers.get('location'));
    if (loc.pathname === '/lab-a') {
      const pb = await fetch(`${BASE}/postback?click_id=${loc.searchParams.get('click')}&txid=lab${i}&token=${POSTBACK['apps.example']}`);
      assert.ok(pb.ok, `lab postback ${i}: ${pb.status}`);
    }
  }
  // Events on the global smartlink's offers: a pause and a resume, a payout change.
  await api('/api/v1/offers/game-global', { method: 'PATCH', body: { status: 'paused' } });
  await api('/api/v1/offers/game-global', { method: 'PATCH', body: { status: 'active' } });
  await api('/api/v1/offers/sweeps-eu', { method: 'PATCH', body: { payout: 1.9 } });
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

// Waits until the page has drawn what it loaded.
async function settled(page) {
  await page.waitForFunction(() => !document.querySelector('#page .loading'));
}

// Each number a table cell of the page carries, as a map `day|offer → clicks`.
async function shareCells(page) {
  return page.evaluate(() => Object.fromEntries([...document.querySelectorAll('#share-table [data-clicks]')]
    .map((e) => [`${e.dataset.day}|${e.dataset.offer}`, Number(e.dataset.clicks)])));
}

function apiShares(rows) {
  const out = {};
  for (const r of rows) out[`${r.day}|${r.offer ?? 'fallback'}`] = r.clicks;
  return out;
}

test('where the traffic went: shares per day, events and the router\'s policy match the API', async () => {
  const page = await newPage();
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/#/traffic?smartlink=global&from=${FROM}&to=${TO}&tz=UTC`);
  await page.locator('#share-table').waitFor({ state: 'attached' });
  const rep = await api(`/api/v1/report?from=${FROM}&to=${AFTER}&tz=UTC&smartlink=global&group_by=day,offer`);
  const shown = await shareCells(page);
  for (const [k, v] of Object.entries(apiShares(rep.rows))) assert.equal(shown[k], v, `${k}: page ${shown[k]}, API ${v}`);
  const nonzero = Object.fromEntries(Object.entries(shown).filter(([, v]) => v > 0));
  assert.deepEqual(nonzero, apiShares(rep.rows));
  // EPC per offer and day.
  for (const r of rep.rows.filter((x) => x.offer && x.clicks)) {
    const v = await page.locator(`#epc-table [data-day="${r.day}"][data-offer="${r.offer}"]`).getAttribute('data-epc');
    assert.equal(Number(v), r.epc, `${r.day} ${r.offer} EPC`);
  }
  // The pause, the resume and the payout change, listed and drawn.
  const events = await page.locator('#events li').allTextContents();
  assert.ok(events.some((e) => /game-global paused/.test(e)), events.join('\n'));
  assert.ok(events.some((e) => /game-global resumed/.test(e)), events.join('\n'));
  assert.ok(events.some((e) => /sweeps-eu payout 1\.8 → 1\.9/.test(e)), events.join('\n'));
  // Every event is on the chart (events close together share a marker).
  const marked = await page.locator('svg.chart').first().locator('g.event title').evaluateAll((ts) => ts.flatMap((t) => t.textContent.split('\n')));
  assert.deepEqual(marked.map((m) => m.replace(/^\d+\. /, '')), events);
  // The router's policy: the API's segments, each offer's probability.
  const policy = await api('/api/v1/policy?smartlink=global&limit=5');
  const segs = await page.locator('section.segment').evaluateAll((xs) => xs.map((x) => x.dataset.segment));
  assert.deepEqual(segs, policy.segments.map((x) => `${x.segment.country}/${x.segment.device}/${x.segment.os}`));
  await axe(page, 'traffic');
  await shot(page, 'traffic');

  // A weighted smartlink: its probabilities are its weights.
  await page.goto(`${BASE}/#/traffic?smartlink=lab&from=${FROM}&to=${TO}&tz=UTC`);
  await page.locator('section.segment').first().waitFor();
  const probs = await page.locator('section.segment').first().locator('[data-probability]').evaluateAll((xs) => xs.map((x) => Number(x.dataset.probability)));
  assert.deepEqual(probs, [0.5, 0.5]);
  const labPolicy = await api('/api/v1/policy?smartlink=lab');
  assert.deepEqual(labPolicy.segments[0].offers.map((o) => o.probability), probs);
  const phone = await newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await signIn(phone, ADMIN);
  await phone.goto(`${BASE}/#/traffic?smartlink=global&from=${FROM}&to=${TO}&tz=UTC`);
  await phone.locator('#share-table').waitFor({ state: 'attached' });
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the traffic page scrolls sideways by ${overflow}px on a phone`);
  await shot(phone, 'traffic-phone');
  await phone.context().close();
  await page.context().close();
});

test('audit: the API\'s figures, and applying a recommendation creates the override', async () => {
  const page = await newPage();
  await signIn(page, ADMIN);
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.locator('#smartlink').selectOption('lab');
  await page.locator('.audit-segment').first().waitFor();
  const audit = await api('/api/v1/audit?smartlink=lab&period=7d');
  const seg = audit.segments.find((x) => x.recommendation);
  assert.ok(seg, `no recommendation: ${JSON.stringify(audit)}`);
  const name = [seg.segment.country, seg.segment.device, seg.segment.os].filter(Boolean).join('/');
  const section = page.locator(`.audit-segment[data-segment="${name}"]`);
  assert.equal(Number(await section.locator('[data-smartlink-epc]').getAttribute('data-smartlink-epc')), seg.smartlink_epc);
  assert.equal(await page.locator('.audit-segment').count(), audit.segments.length);
  assert.equal(seg.recommendation.offer, 'lab-a');
  await axe(page, 'audit');
  await shot(page, 'audit');
  // Dismissing the confirmation changes nothing; accepting applies it.
  page.once('dialog', (d) => d.dismiss());
  await section.locator('button.apply').click();
  assert.equal((await api('/api/v1/smartlinks/lab')).overrides, undefined);
  page.once('dialog', (d) => {
    assert.match(d.message(), /lab-a/);
    d.accept();
  });
  await section.locator('button.apply').click();
  await section.getByText(/^Applied:/).waitFor();
  const lab = await api('/api/v1/smartlinks/lab');
  assert.deepEqual(lab.overrides[0], seg.recommendation.apply.body);
  // It is in the change history, which the page links to.
  await section.getByRole('link', { name: /change history/ }).click();
  await page.locator('#history').waitFor();
  const hist = await api('/api/v1/history?kind=smartlink&id=lab&limit=200');
  assert.equal(await page.locator('#history tbody tr').count(), hist.changes.length);
  assert.match(await page.locator('#history tbody tr').first().textContent(), /overrides/);
  await axe(page, 'history');
  await shot(page, 'history');
  await page.context().close();
});

test('why did EPC change, coverage, quality and alerts show the API\'s answers', async () => {
  const page = await newPage();
  await signIn(page, ADMIN);
  // Explain: today against the six days before, in UTC.
  await page.goto(`${BASE}/#/explain?smartlink=global&from=${TO}&to=${TO}&vs_from=${FROM}&vs_to=${utcDate(-1)}&tz=UTC`);
  await page.locator('#explain-table').waitFor();
  const ms = (d) => Date.parse(`${d}T00:00:00Z`);
  const ex = await api(`/api/v1/explain?smartlink=global&from=${ms(TO)}&to=${ms(AFTER)}&vs=${ms(FROM)}..${ms(TO)}`);
  assert.equal(await page.locator('#explain-summary').textContent(), ex.summary);
  assert.equal(Number(await page.locator('[data-part="change"]').getAttribute('data-value')), ex.change);
  for (const part of ['traffic_mix', 'offer_pool', 'payout', 'conversion_rate', 'approval']) {
    assert.equal(Number(await page.locator(`[data-part="${part}"]`).getAttribute('data-value')), ex.parts[part], part);
  }
  assert.equal(await page.locator('svg.chart rect.wf').count(), 7, 'before, five parts, now');
  assert.ok((await page.locator('#events li').count()) >= 3, 'the offers\' events');
  await axe(page, 'explain');
  await shot(page, 'explain');

  await page.getByRole('link', { name: 'Coverage' }).click();
  await page.locator('[data-metric="fallback_clicks"]').waitFor();
  const cov = await api('/api/v1/coverage?smartlink=global&period=7d');
  for (const m of ['clicks', 'fallback_clicks', 'fallback_share', 'routed_epc']) {
    assert.equal(Number(await page.locator(`[data-metric="${m}"]`).getAttribute('data-value')), cov[m], m);
  }
  assert.equal(await page.locator('#gaps tbody tr').count(), cov.gaps.length);
  await axe(page, 'coverage');
  await shot(page, 'coverage');

  await page.getByRole('link', { name: 'Quality' }).click();
  await page.locator('#quality').waitFor();
  const q = await api('/api/v1/quality?smartlink=global&period=7d&by=affiliate');
  const names = await page.locator('#quality [data-source]').evaluateAll((xs) => xs.map((x) => x.dataset.source));
  assert.deepEqual(names, q.sources.map((x) => x.affiliate ?? '(none)'));
  await axe(page, 'quality');
  await shot(page, 'quality');

  await page.getByRole('link', { name: 'Alerts' }).click();
  await page.locator('#main h1').filter({ hasText: 'Alerts' }).waitFor();
  await settled(page);
  const alerts = await api('/api/v1/alerts?limit=200');
  assert.equal(await page.locator('#alerts tbody tr').count(), alerts.alerts.length);
  await axe(page, 'alerts');
  await page.context().close();
});

test('click and conversion logs page like the API and find a click by its id', async () => {
  const page = await newPage();
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/#/clicks?from=${FROM}&to=${TO}&tz=UTC`);
  await page.locator('#clicks').waitFor();
  const p1 = await api(`/api/v1/clicks?from=${FROM}&to=${AFTER}&tz=UTC&limit=50`);
  const ids = () => page.locator('#clicks [data-click]').evaluateAll((xs) => xs.map((x) => x.dataset.click));
  assert.deepEqual(await ids(), p1.clicks.map((c) => c.click_id));
  assert.ok(p1.next_cursor, 'more than one page');
  await page.locator('#older').click();
  await page.getByText('Page 2:').waitFor();
  const p2 = await api(`/api/v1/clicks?from=${FROM}&to=${AFTER}&tz=UTC&limit=50&cursor=${encodeURIComponent(p1.next_cursor)}`);
  assert.deepEqual(await ids(), p2.clicks.map((c) => c.click_id));
  await axe(page, 'clicks');
  await shot(page, 'clicks');
  // Search by click id: a converted click, its decision and its conversion.
  const convs = await api(`/api/v1/conversions?from=${FROM}&to=${AFTER}&tz=UTC&limit=50`);
  const conv = convs.conversions[0];
  await page.locator('#click-search').fill(conv.click_id);
  await page.locator('#click-search').press('Enter');
  await page.locator('#click-detail').waitFor();
  assert.equal(await page.locator('#click-title code').textContent(), conv.click_id);
  assert.deepEqual(await page.locator('#click-conversions [data-conversion]').allTextContents(), [String(conv.id)]);
  await shot(page, 'click-detail');

  await page.getByRole('link', { name: 'Conversions' }).click();
  await page.locator('#conversions').waitFor();
  const shown = await page.locator('#conversions [data-conversion]').allTextContents();
  assert.deepEqual(shown, convs.conversions.map((c) => String(c.id)));
  await axe(page, 'conversions');
  await shot(page, 'conversions');
  await page.context().close();
});

test('an affiliate sees only its own data on the new pages', async () => {
  const page = await newPage();
  await signIn(page, KEYS.aff1);
  for (const name of ['Audit', 'EPC change', 'Coverage', 'Quality', 'Alerts', 'History', 'Smartlinks']) {
    assert.equal(await page.getByRole('link', { name }).count(), 0, `no ${name} link`);
  }
  // Asking for another affiliate's smartlink shows its own.
  await page.goto(`${BASE}/#/traffic?smartlink=mobile-apps&from=${FROM}&to=${TO}&tz=UTC`);
  await page.locator('#share-table').waitFor({ state: 'attached' });
  assert.deepEqual(await page.locator('#smartlink option').allTextContents(), ['global']);
  assert.equal(await page.locator('#smartlink').inputValue(), 'global');
  const mine = await api(`/api/v1/report?from=${FROM}&to=${AFTER}&tz=UTC&smartlink=global&group_by=day,offer`, { token: KEYS.aff1 });
  const shown = Object.fromEntries(Object.entries(await shareCells(page)).filter(([, v]) => v > 0));
  assert.deepEqual(shown, apiShares(mine.rows));
  assert.equal(await page.locator('section.segment').count(), 0, 'no router policy for an affiliate');
  await axe(page, 'traffic-affiliate');
  // Clicks: only its own, without addresses.
  await page.goto(`${BASE}/#/clicks?from=${FROM}&to=${TO}&tz=UTC`);
  await page.locator('#clicks').waitFor();
  const head = await page.locator('#clicks thead th').allTextContents();
  assert.ok(!head.includes('IP'), head.join(','));
  const affs = await page.locator('#clicks tbody tr').evaluateAll((rows) => rows.map((r) => r.children[4].textContent));
  assert.ok(affs.length > 0 && affs.every((a) => a === 'aff1'), affs.join(','));
  const theirs = await api(`/api/v1/clicks?from=${FROM}&to=${AFTER}&tz=UTC&limit=50`, { token: KEYS.aff1 });
  assert.deepEqual(await page.locator('#clicks [data-click]').evaluateAll((xs) => xs.map((x) => x.dataset.click)), theirs.clicks.map((c) => c.click_id));
  await axe(page, 'clicks-affiliate');
  // Another affiliate's click is not found.
  const other = await api(`/api/v1/clicks?from=${FROM}&to=${AFTER}&tz=UTC&limit=1`, { token: KEYS.aff2 });
  page.expectedErrors = true;
  await page.goto(`${BASE}/#/clicks?from=${FROM}&to=${TO}&tz=UTC&click=${other.clicks[0].click_id}`);
  await page.getByText(/No click .* \(or not yours\)/).waitFor();
  page.expectedErrors = false;
  // Conversions: its own.
  await page.goto(`${BASE}/#/conversions?from=${FROM}&to=${TO}&tz=UTC`);
  await page.locator('#main h1').filter({ hasText: 'Conversion log' }).waitFor();
  await settled(page);
  const convs = await api(`/api/v1/conversions?from=${FROM}&to=${AFTER}&tz=UTC&limit=50`, { token: KEYS.aff1 });
  assert.deepEqual(await page.locator('#conversions [data-conversion]').allTextContents(), convs.conversions.map((c) => String(c.id)));
  // An admin page says so.
  await page.goto(`${BASE}/#/audit`);
  await page.getByText('This page is for the admin.').waitFor();
  await shot(page, 'audit-affiliate');
  await page.context().close();
});

test('editing a smartlink and creating an affiliate and an offer go through the API', async () => {
  const page = await newPage();
  await signIn(page, ADMIN);
  await page.getByRole('link', { name: 'Smartlinks' }).click();
  await page.locator('#smartlinks').waitFor();
  assert.deepEqual(await page.locator('#smartlinks tbody th').allTextContents(), (await api('/api/v1/smartlinks')).map((x) => x.slug));
  await page.getByRole('link', { name: 'rotation' }).click();
  await page.locator('#def-form').waitFor();
  // An offer that does not exist: the API's error next to the field.
  page.expectedErrors = true;
  await page.getByLabel(/^Offers, in order/).fill('game-global, vpn-app, antivirus-win, nope');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.locator('[data-field-error="offers"]').filter({ hasText: /./ }).waitFor();
  page.expectedErrors = false;
  assert.equal((await api('/api/v1/smartlinks/rotation')).offers.length, 3);
  await axe(page, 'smartlink-edit-error');
  await shot(page, 'smartlink-edit-error');
  await page.getByLabel(/^Offers, in order/).fill('game-global, vpn-app, antivirus-win');
  await page.getByLabel(/^Weights/).fill('1, 1, 3');
  await page.getByLabel('Fallback URL').fill('https://fallback.example/rotation2');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.locator('#form-status').filter({ hasText: 'Saved.' }).waitFor();
  const rot = await api('/api/v1/smartlinks/rotation');
  assert.deepEqual(rot.weights, [1, 1, 3]);
  assert.equal(rot.fallback_url, 'https://fallback.example/rotation2');
  await shot(page, 'smartlink-edit');

  // A new affiliate.
  await page.goto(`${BASE}/#/affiliates/new`);
  await page.locator('#def-form').waitFor();
  await page.getByLabel('Id', { exact: true }).fill('aff3');
  await page.getByLabel(/^Payout share/).fill('0.5');
  await page.getByRole('button', { name: 'Create affiliate' }).click();
  await page.locator('#form-status').filter({ hasText: 'Affiliate created.' }).waitFor();
  assert.equal((await api('/api/v1/affiliates/aff3')).payout_share, 0.5);
  await axe(page, 'affiliate-edit');

  // A new offer.
  await page.goto(`${BASE}/#/offers/new`);
  await page.locator('#def-form').waitFor();
  await page.getByLabel('Id', { exact: true }).fill('new-offer');
  await page.getByLabel('Advertiser').selectOption('adv-apps');
  await page.getByLabel(/^URL/).fill('https://apps.example/new?click={click_id}');
  await page.getByLabel('Payout', { exact: true }).fill('0.8');
  await page.getByRole('button', { name: 'Create offer' }).click();
  await page.locator('#offer-status').waitFor();
  const created = await api('/api/v1/offers/new-offer');
  assert.equal(created.payout, 0.8);
  assert.equal(created.advertiser, 'adv-apps');
  await axe(page, 'offer-new');
  await page.context().close();
});

test('the simulator runs a bundled scenario and shows the API\'s scores and the report', async () => {
  const page = await newPage();
  await signIn(page, ADMIN);
  await page.getByRole('link', { name: 'Simulator' }).click();
  await page.locator('#sim-form').waitFor();
  await axe(page, 'simulator');
  await page.getByLabel('Scenario', { exact: true }).selectOption('basic');
  await page.locator('#sim-about').filter({ hasText: /48 hours/ }).waitFor();
  await page.getByLabel('Seed').fill('4');
  // Three strategies of five (the oracle always runs): a quick run.
  await page.getByLabel('round robin').uncheck();
  await page.getByLabel(/^greedy EPC/).uncheck();
  await page.getByRole('button', { name: 'Run simulation' }).click();
  await page.locator('#sim-scores').waitFor({ timeout: 120000 });

  // The table's numbers are the API's for the same request (a run is
  // deterministic per seed).
  const shown = await page.evaluate(() => [...document.querySelectorAll('#sim-scores tbody tr')].map((tr) => ({
    strategy: tr.querySelector('[data-strategy]').dataset.strategy,
    ...Object.fromEntries([...tr.querySelectorAll('[data-field]')].map((c) => [c.dataset.field, Number(c.dataset.value)])),
  })));
  const again = await api('/api/v1/simulations', { method: 'POST', body: { example: 'basic', seed: 4, strategies: ['smartlink', 'random'] } });
  assert.deepEqual(shown, again.results);
  assert.deepEqual(shown.map((r) => r.strategy), ['oracle', 'smartlink', 'random']);
  const kept = (await api('/api/v1/simulations')).simulations;
  const id = await page.locator('[data-run]').getAttribute('data-run');
  assert.ok(kept.some((r) => r.id === id), 'the page\'s run is kept by the server');
  assert.ok((await page.evaluate(() => location.hash)).endsWith(`run=${id}`), 'the run is in the URL');

  // The simulator's own report, framed: its scores table names every strategy.
  const frame = page.frameLocator('#sim-report');
  await frame.locator('table').waitFor();
  const reportRows = await frame.locator('table tbody tr td:first-child').allTextContents();
  assert.deepEqual(reportRows, ['oracle', 'smartlink', 'random']);
  assert.match(await frame.locator('h1').textContent(), /basic/);
  const report = await page.request.get(`${BASE}/api/v1/simulations/${id}.html`);
  assert.equal(report.status(), 200);
  assert.match(report.headers()['content-security-policy'], /sandbox/);
  await axe(page, 'simulator-result');
  await shot(page, 'simulator');
  // A full-page capture leaves the report's frame (another process) blank.
  await page.locator('#sim-report').screenshot({ path: join(SHOTS, 'simulator-frame.png') });

  // The report on its own, accessible too (scripts are off in it: axe is
  // injected by the test with the page's policy bypassed).
  const alone = await newPage({ bypassCSP: true });
  await alone.context().addCookies(await page.context().cookies());
  await alone.goto(`${BASE}/api/v1/simulations/${id}.html`);
  await alone.locator('table').waitFor();
  await axe(alone, 'simulator-report');
  await shot(alone, 'simulator-report');
  await alone.context().close();

  // A reload shows the run again.
  await page.reload();
  await page.locator(`[data-run="${id}"] #sim-scores`).waitFor();

  // A broken file: the API's message, and the field marked.
  await page.getByLabel('Scenario', { exact: true }).selectOption('');
  page.expectedErrors = true;
  await page.getByLabel(/^The scenario/).fill('name: broken\nduration_hours: 0\n');
  await page.getByRole('button', { name: 'Run simulation' }).click();
  await page.locator('#sim-error').filter({ hasText: /scenario/ }).waitFor();
  page.expectedErrors = false;
  assert.equal(await page.locator('#sim-text').getAttribute('aria-invalid'), 'true');
  await axe(page, 'simulator-error');
  await shot(page, 'simulator-error');
  await page.context().close();

  // An affiliate sees neither the page nor its API.
  const aff = await newPage();
  await signIn(aff, KEYS.aff1);
  assert.equal(await aff.getByRole('link', { name: 'Simulator' }).count(), 0, 'no Simulator link for an affiliate');
  await aff.goto(`${BASE}/#/simulator`);
  await aff.getByText('This page is for the admin.').waitFor();
  aff.expectedErrors = true;
  const status = await aff.evaluate(async () => (await fetch('/api/v1/scenarios')).status);
  aff.expectedErrors = false;
  assert.equal(status, 403);
  await aff.context().close();
});

test('the new pages fit a phone\'s width', async () => {
  const phone = await newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await signIn(phone, ADMIN);
  const pages = [
    ['audit-phone', `#/audit?smartlink=lab&period=7d`, '.audit-segment'],
    ['explain-phone', `#/explain?smartlink=global&from=${TO}&to=${TO}&vs_from=${FROM}&vs_to=${utcDate(-1)}&tz=UTC`, '#explain-table'],
    ['clicks-phone', `#/clicks?from=${FROM}&to=${TO}&tz=UTC`, '#clicks'],
    ['smartlink-edit-phone', '#/smartlinks/global', '#def-form'],
    ['simulator-phone', '#/simulator', '#sim-form'],
  ];
  for (const [name, hash, ready] of pages) {
    await phone.goto(`${BASE}/${hash}`);
    await phone.locator(ready).first().waitFor();
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `${name}: the page scrolls sideways by ${overflow}px on a phone`);
    await shot(phone, name);
  }
  await phone.context().close();
});
