// Tenants and keys (admin role): create a tenant with limits and a budget,
// create a key (its secret shown once, with a copy button), revoke, rotate,
// set allowed models. Every change is confirmed first and reflected in the
// tables from the API's answer, without a reload.

import * as api from './api.js';
import { h, table, badge, time, confirmChange, clear } from './dom.js';
import { dollars } from './money.js';

const LIMITS = [
  ['requests_per_minute', 'Requests/min'],
  ['tokens_per_minute', 'Tokens/min'],
  ['tokens_per_day', 'Tokens/day'],
  ['concurrent', 'Concurrent'],
];

export async function render(root, { session, params, navigate }) {
  root.append(h('h1', {}, 'Tenants and keys'));
  if (session.role !== 'admin') {
    // Nothing is fetched: the API refuses these routes to this role anyway.
    root.append(h('p', { class: 'notice error', id: 'not-allowed' },
      `Managing tenants and keys needs the admin role; you are signed in as ${session.role}.`));
    return;
  }
  const notices = h('div', { id: 'notices' });
  const tenantsCard = h('div', { class: 'card' });
  const keysCard = h('div', { class: 'card', id: 'keys-card' });
  root.append(notices, h('div', { class: 'grid two' }, tenantsCard, keysCard));
  const tenants = (await api.get('/admin/v1/tenants')).data;
  const selected = tenants.find((tenant) => tenant.name === params.get('tenant')) || null;
  const choose = (tenant) => navigate('tenants', new URLSearchParams({ tenant: tenant.name }));

  const tenantTable = () => table([
    { label: 'Tenant', cell: (tenant) => tenant.name },
    { label: 'Status', cell: (tenant) => badge(tenant.status) },
    { label: 'Budget / month', num: true, cell: (tenant) => (tenant.monthly_budget_usd === null ? 'none' : dollars(tenant.monthly_budget_usd)) },
    { label: 'Limits', cell: (tenant) => limitsText(tenant.limits) },
    { label: '', cell: (tenant) => h('button', { type: 'button', class: 'small', 'data-keys': tenant.name, onclick: () => choose(tenant) }, 'Keys') },
  ], tenants, {
    id: 'tenants-table',
    rowAttributes: (tenant) => ({ 'data-tenant': tenant.name, class: tenant === selected ? 'selected' : null }),
  });
  const tenantList = h('div', {}, tenantTable());
  tenantsCard.append(h('h2', {}, 'Tenants'), tenantList, h('h2', {}, 'New tenant'), tenantForm(async (body) => {
    const created = await api.post('/admin/v1/tenants', body);
    tenants.unshift(created);
    tenantList.replaceChildren(tenantTable());
    say(notices, `Tenant ${created.name} created.`);
  }, notices));

  if (!selected) {
    keysCard.append(h('h2', {}, 'Keys'), h('p', { class: 'muted' }, 'Choose a tenant to see and manage its keys.'));
    return;
  }
  const keys = (await api.get(api.path('tenants', selected.name, 'keys'))).data;
  const keyList = h('div', {});
  const secretBox = h('div', {});
  const redraw = () => keyList.replaceChildren(keyTable(keys, actions));
  const replace = (key) => {
    const index = keys.findIndex((known) => known.id === key.id);
    if (index >= 0) keys[index] = key; else keys.unshift(key);
  };
  const showSecret = (created, what) => secretBox.replaceChildren(secretPanel(created, what, () => clear(secretBox)));
  const actions = {
    async revoke(key) {
      if (!await confirmChange(`Revoke key ${key.name} (${key.prefix}…)? Requests with it are refused from then on (after the edge's key cache, 30 s by default).`, { confirmLabel: 'Revoke' })) return;
      await guarded(notices, async () => { replace(await api.post(api.path('keys', key.id, 'revoke'))); redraw(); say(notices, `Key ${key.name} revoked.`); });
    },
    async rotate(key) {
      if (!await confirmChange(`Rotate key ${key.name}? The current secret stops working and a new one is shown once.`, { confirmLabel: 'Rotate' })) return;
      await guarded(notices, async () => {
        const created = await api.post(api.path('keys', key.id, 'rotate'));
        replace({ ...key, status: 'revoked', revoked_at: created.key.created_at });
        replace(created.key);
        redraw();
        showSecret(created, `New secret of ${created.key.name}`);
      });
    },
    async models(key) {
      const text = await confirmChange(`Models key ${key.name} may use (comma-separated; empty: every model).`, { input: 'Allowed models', value: key.allowed_models.join(', '), confirmLabel: 'Save' });
      if (text === null) return;
      const allowed = text.split(',').map((model) => model.trim()).filter(Boolean);
      await guarded(notices, async () => { replace(await api.patch(api.path('keys', key.id), { allowed_models: allowed })); redraw(); say(notices, `Models of ${key.name} saved.`); });
    },
  };
  redraw();
  keysCard.append(h('h2', {}, `Keys of ${selected.name}`), secretBox, keyList, h('h2', {}, 'New key'), keyForm(async (body) => {
    const created = await api.post(api.path('tenants', selected.name, 'keys'), body);
    replace(created.key);
    redraw();
    showSecret(created, `Secret of ${created.key.name}`);
  }, notices));
}

function limitsText(limits) {
  const set = LIMITS.filter(([field]) => limits[field] !== null && limits[field] !== undefined);
  return set.length ? set.map(([field, label]) => `${label} ${limits[field]}`).join(', ') : 'none';
}

function keyTable(keys, actions) {
  return table([
    { label: 'Key', cell: (key) => h('span', {}, key.name, h('br'), h('code', { class: 'muted' }, `${key.prefix}…`)) },
    { label: 'Status', cell: (key) => badge(key.status) },
    { label: 'Models', cell: (key) => (key.allowed_models.length ? key.allowed_models.join(', ') : 'all') },
    { label: 'Last used', cell: (key) => time(key.last_used_at) },
    {
      label: '',
      cell: (key) => (key.status !== 'active' ? '' : h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'small', 'data-action': 'models', onclick: () => actions.models(key) }, 'Models'),
        h('button', { type: 'button', class: 'small', 'data-action': 'rotate', onclick: () => actions.rotate(key) }, 'Rotate'),
        h('button', { type: 'button', class: 'small danger', 'data-action': 'revoke', onclick: () => actions.revoke(key) }, 'Revoke'))),
    },
  ], keys, { id: 'keys-table', rowAttributes: (key) => ({ 'data-key': key.id, 'data-name': key.name, 'data-status': key.status }) });
}

// The secret, once: it is in this panel only until it is dismissed or the
// page is left, and never anywhere else in the page.
function secretPanel(created, title, dismiss) {
  const copy = h('button', { type: 'button', id: 'copy-secret', class: 'primary' }, 'Copy');
  const code = h('code', { id: 'new-secret' }, created.secret);
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(created.secret);
    } catch {
      // No clipboard permission: select the text for Ctrl+C instead.
      const range = document.createRange();
      range.selectNodeContents(code);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      document.execCommand('copy');
    }
    copy.textContent = 'Copied';
  });
  return h('div', { class: 'secret', id: 'secret-panel' },
    h('b', {}, title),
    h('div', { class: 'row' }, code, copy),
    h('div', { class: 'muted' }, 'Store it now: it is shown only this once and cannot be recovered.'),
    h('div', { class: 'row' }, h('button', { type: 'button', id: 'dismiss-secret', onclick: dismiss }, 'Done')));
}

function say(notices, message) {
  notices.replaceChildren(h('p', { class: 'notice', role: 'status' }, message));
}

async function guarded(notices, action) {
  try {
    await action();
  } catch (error) {
    notices.replaceChildren(h('p', { class: 'notice error', role: 'alert' }, error.message));
  }
}

function tenantForm(create, notices) {
  const name = h('input', { id: 'tenant-name', required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', class: 'wide' });
  const budget = h('input', { id: 'tenant-budget', placeholder: 'none', inputmode: 'decimal' });
  const limits = LIMITS.map(([field, label]) => [field, label, h('input', { id: `tenant-${field}`, type: 'number', min: 0, placeholder: 'none' })]);
  return h('form', {
    class: 'inline', id: 'tenant-form',
    onsubmit: async (event) => {
      event.preventDefault();
      const body = { name: name.value.trim() };
      if (budget.value.trim()) body.monthly_budget_usd = budget.value.trim();
      const set = limits.filter(([, , box]) => box.value !== '');
      if (set.length) body.limits = Object.fromEntries(set.map(([field, , box]) => [field, Number(box.value)]));
      const budgetText = body.monthly_budget_usd ? `a monthly budget of ${dollars(body.monthly_budget_usd)}` : 'no budget';
      if (!await confirmChange(`Create tenant ${body.name} with ${budgetText} and limits: ${limitsText(body.limits || {})}?`, { confirmLabel: 'Create' })) return;
      await guarded(notices, async () => { await create(body); event.target.reset(); });
    },
  },
  h('label', {}, 'Name', name),
  h('label', {}, 'Budget (USD/month)', budget),
  limits.map(([, label, box]) => h('label', {}, label, box)),
  h('button', { type: 'submit', class: 'primary', id: 'tenant-create' }, 'Create tenant'));
}

function keyForm(create, notices) {
  const name = h('input', { id: 'key-name', required: true, class: 'wide' });
  const models = h('input', { id: 'key-models', placeholder: 'every model', class: 'wide' });
  return h('form', {
    class: 'inline', id: 'key-form',
    onsubmit: async (event) => {
      event.preventDefault();
      const allowed = models.value.split(',').map((model) => model.trim()).filter(Boolean);
      const body = { name: name.value.trim(), allowed_models: allowed };
      if (!await confirmChange(`Create key ${body.name} for ${allowed.length ? allowed.join(', ') : 'every model'}? Its secret is shown once.`, { confirmLabel: 'Create' })) return;
      await guarded(notices, async () => { await create(body); event.target.reset(); });
    },
  },
  h('label', {}, 'Name', name),
  h('label', {}, 'Allowed models (comma-separated)', models),
  h('button', { type: 'submit', class: 'primary', id: 'key-create' }, 'Create key'));
}
