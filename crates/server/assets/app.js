// The dashboard's shell: the session (sign-in, sign-out), the navigation
// and the hash router (#/overview, #/breakdowns, #/offers/{id}).

import { session, setSession, whenSignedOut, ApiError } from './api.js';
import { el, parseHash } from './util.js';
import * as overview from './overview.js';
import * as breakdowns from './breakdowns.js';
import * as offers from './offers.js';
import * as traffic from './traffic.js';
import * as audit from './audit.js';
import * as explain from './explain.js';
import * as coverage from './coverage.js';
import * as quality from './quality.js';
import * as logs from './logs.js';
import * as hist from './history.js';
import * as defs from './defs.js';
import * as simulator from './simulator.js';

const definitions = (kind) => ({ render: (root, query, who, rest) => defs.render(kind, root, query, who, rest) });
const PAGES = {
  overview, traffic, breakdowns, audit, explain, coverage, quality, simulator,
  clicks: { render: logs.clicks },
  conversions: { render: logs.conversions },
  alerts: { render: hist.alerts },
  history: { render: hist.history },
  offers,
  smartlinks: definitions('smartlinks'),
  advertisers: definitions('advertisers'),
  affiliates: definitions('affiliates'),
  sources: definitions('sources'),
};
const TITLES = {
  overview: 'Overview', traffic: 'Where the traffic went', breakdowns: 'Breakdowns', audit: 'Audit', explain: 'Why did EPC change',
  coverage: 'Coverage gaps', quality: 'Traffic quality', clicks: 'Click log', conversions: 'Conversion log', alerts: 'Alerts',
  history: 'Change history', simulator: 'Simulator', offers: 'Offers', smartlinks: 'Smartlinks', advertisers: 'Advertisers', affiliates: 'Affiliates', sources: 'Traffic sources',
};
const $ = (id) => document.getElementById(id);
let who = null;
let rendering = 0;

function showSignIn(message) {
  who = null;
  setSession(null);
  $('top').hidden = true;
  $('page').replaceChildren();
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  document.title = 'Sign in · smartlink';
  $('token').focus();
}

function signedIn(s) {
  who = s;
  setSession(s);
  $('signin').hidden = true;
  $('token').value = '';
  $('top').hidden = false;
  $('who').textContent = s.role === 'admin' ? 'Admin' : `Affiliate ${s.affiliate}`;
  for (const a of document.querySelectorAll('[data-admin]')) a.hidden = s.role !== 'admin';
  route();
}

async function route() {
  if (!who) return;
  const { page, query } = parseHash();
  const [name, ...rest] = page.split('/');
  const known = Object.hasOwn(PAGES, name);
  const view = known ? PAGES[name] : overview;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[known ? name : 'overview']} · smartlink`;
  const root = $('page');
  const mine = ++rendering;
  // A newer navigation wins: an older render that finishes late draws
  // into a detached node.
  const target = el('div');
  root.replaceChildren(target);
  await view.render(target, query, who, rest.join('/'));
  if (mine !== rendering) target.remove();
}

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = $('token').value.trim();
  if (!token) {
    $('signin-error').textContent = 'Enter the admin token or your API key.';
    return;
  }
  try {
    signedIn(await session.signIn(token));
  } catch (err) {
    const retry = err instanceof ApiError && err.status === 429;
    $('signin-error').textContent = retry
      ? 'Too many failed attempts from this address. Wait a minute and try again.'
      : err.message;
    $('token').select();
  }
});

$('signout').addEventListener('click', async () => {
  try {
    await session.signOut();
  } finally {
    showSignIn('Signed out.');
  }
});

whenSignedOut(() => showSignIn('Your session has ended. Sign in again.'));
window.addEventListener('hashchange', route);

session.current().then((s) => (s ? signedIn(s) : showSignIn('')), () => showSignIn(''));
