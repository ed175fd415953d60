// The dashboard's shell: the session (sign-in, sign-out), the navigation
// and the hash router (#/overview, #/breakdowns, #/offers/{id}).

import { session, setSession, whenSignedOut, ApiError } from './api.js';
import { el, parseHash } from './util.js';
import * as overview from './overview.js';
import * as breakdowns from './breakdowns.js';
import * as offers from './offers.js';

const PAGES = { overview, breakdowns, offers };
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
  const view = PAGES[name] || overview;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · smartlink`;
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
