// The console's shell: sign-in, the navigation (pages by role), and the
// router (`#/page?query`), which renders one page module at a time.

import * as api from './api.js';
import { h, clear } from './dom.js';
import * as overview from './overview.js';
import * as usage from './usage.js';
import * as tenants from './tenants.js';
import * as request from './request.js';

const pages = { overview, usage, tenants, request };
let session = null;

const $ = (id) => document.getElementById(id);

function showSignIn(message) {
  session = null;
  api.useSession(null);
  $('bar').hidden = true;
  $('page').hidden = true;
  $('loading').hidden = true;
  clear($('page'));
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message || '';
  $('credential').focus();
}

function signedIn(current) {
  session = current;
  $('sign-in').hidden = true;
  $('loading').hidden = true;
  $('bar').hidden = false;
  $('page').hidden = false;
  clear($('who')).append(h('b', {}, current.actor), ` · ${current.role}`);
  for (const link of $('nav').querySelectorAll('a')) {
    const roles = link.dataset.roles;
    link.hidden = Boolean(roles) && !roles.split(',').includes(current.role);
  }
  route();
}

// `#/usage?from=...` -> ['usage', URLSearchParams]
function currentRoute() {
  const hash = window.location.hash.replace(/^#\/?/, '');
  const [name, query = ''] = hash.split('?');
  return [name || 'overview', new URLSearchParams(query)];
}

export function navigate(name, params) {
  const query = params && params.toString();
  const target = `#/${name}${query ? `?${query}` : ''}`;
  if (window.location.hash === target) route();
  else window.location.hash = target;
}

function route() {
  if (!session) return;
  const [name, params] = currentRoute();
  const page = pages[name] ? name : 'overview';
  for (const link of $('nav').querySelectorAll('a')) {
    link.classList.toggle('current', link.dataset.page === page);
  }
  // A fresh element per visit: a slow answer for the page just left lands
  // in a detached element instead of the page now shown.
  const root = h('div', { id: `page-${page}` });
  clear($('page')).append(root);
  document.title = `${$('nav').querySelector(`[data-page=${page}]`).textContent} · llmgw console`;
  pages[page].render(root, { session, params, navigate }).catch((error) => {
    root.prepend(h('p', { class: 'notice error', role: 'alert' }, error.message));
  });
}

async function start() {
  api.onSignedOut(showSignIn);
  $('sign-in-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const box = $('credential');
    $('sign-in-error').textContent = '';
    try {
      const current = await api.signIn(box.value.trim());
      box.value = '';
      signedIn(current);
    } catch (error) {
      box.value = '';
      $('sign-in-error').textContent = error.message;
    }
  });
  $('sign-out').addEventListener('click', async () => {
    try {
      await api.signOut();
      showSignIn('Signed out.');
    } catch (error) {
      showSignIn(error.message);
    }
  });
  window.addEventListener('hashchange', route);
  try {
    signedIn(await api.currentSession());
  } catch {
    showSignIn('');
  }
}

start();
