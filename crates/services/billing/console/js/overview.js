// Overview: month-to-date spend and tokens, a daily chart of the selected
// range, top tenants and models, and the tenants closest to their monthly
// budget. Every figure is one admin API report, the same the CLI prints.

import * as api from './api.js';
import { h, table } from './dom.js';
import { nanos, usd, dollars, count, percent, asFloat, byCost } from './money.js';
import { series } from './chart.js';
import { rangeForm, thisMonth } from './usage.js';

const TOP = 5;

export async function render(root, { session, params, navigate }) {
  const month = thisMonth();
  const from = params.get('from') || month.from;
  const to = params.get('to') || month.to;
  root.append(
    h('div', { class: 'toolbar' },
      h('h1', {}, 'Overview'),
      h('span', { class: 'spacer' }),
      rangeForm(from, to, (range) => navigate('overview', new URLSearchParams(range)))),
  );
  const stats = h('div', { class: 'grid four', id: 'month-to-date' });
  const chart = h('div', { class: 'chart', id: 'daily-chart' });
  const topTenants = h('div', { id: 'top-tenants' }, h('p', { class: 'muted' }, 'Loading…'));
  const topModels = h('div', { id: 'top-models' }, h('p', { class: 'muted' }, 'Loading…'));
  const budgets = h('div', { id: 'budgets' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(
    stats,
    h('div', { class: 'card' }, h('h2', {}, `Daily spend and tokens, ${from} to ${to} (exclusive)`), chart),
    h('div', { class: 'grid two' },
      h('div', { class: 'card' }, h('h2', {}, 'Top tenants'), topTenants),
      h('div', { class: 'card' }, h('h2', {}, 'Top models'), topModels)),
    h('div', { class: 'card' }, h('h2', {}, 'Closest to their monthly budget (this month)'), budgets),
  );

  const range = { from, to };
  const [monthToDate, byDay, byTenant, byModel, monthByTenant, tenants] = await Promise.allSettled([
    api.get('/admin/v1/usage'),
    api.get('/admin/v1/usage', { ...range, group_by: 'day' }),
    api.get('/admin/v1/usage', { ...range, group_by: 'tenant' }),
    api.get('/admin/v1/usage', { ...range, group_by: 'model' }),
    api.get('/admin/v1/usage', { group_by: 'tenant' }),
    api.get('/admin/v1/tenants'),
  ]);
  const failed = [monthToDate, byDay, byTenant, byModel].find((answer) => answer.status === 'rejected');
  if (failed) throw failed.reason;

  const total = monthToDate.value.total;
  const tokens = BigInt(total.prompt_tokens) + BigInt(total.completion_tokens);
  stats.append(
    stat('Month-to-date spend', h('span', { id: 'mtd-spend' }, dollars(total.cost_usd)), `${monthToDate.value.from} to today (UTC)`),
    stat('Month-to-date tokens', h('span', { id: 'mtd-tokens' }, count(tokens)),
      h('span', {}, 'prompt ', h('span', { id: 'mtd-prompt-tokens' }, count(total.prompt_tokens)),
        ' · completion ', h('span', { id: 'mtd-completion-tokens' }, count(total.completion_tokens)))),
    stat('Month-to-date requests', h('span', { id: 'mtd-requests' }, count(total.requests)), 'upstream attempts, retries included'),
    stat('Selected range', h('span', { id: 'range-spend' }, dollars(byDay.value.total.cost_usd)), `${count(byDay.value.total.requests)} requests`),
  );

  const days = byDay.value.rows;
  series(chart, days.map((row) => row.day), days.map((row) => asFloat(nanos(row.cost_usd))),
    days.map((row) => Number(row.prompt_tokens) + Number(row.completion_tokens)));

  fill(topTenants, top(byTenant.value.rows, 'tenant', 'Tenant'));
  fill(topModels, top(byModel.value.rows, 'model', 'Model'));
  if (tenants.status === 'rejected' || monthByTenant.status === 'rejected') {
    const reason = tenants.status === 'rejected' ? tenants.reason : monthByTenant.reason;
    fill(budgets, h('p', { class: 'muted' },
      reason.status === 403 ? `Budgets are not shown to the ${session.role} role.` : reason.message));
  } else {
    fill(budgets, closestToBudget(tenants.value.data, monthByTenant.value.rows));
  }
}

function stat(label, value, detail) {
  return h('div', { class: 'card stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value),
    h('div', { class: 'detail' }, detail));
}

function fill(element, content) {
  element.replaceChildren(content);
}

function top(rows, field, label) {
  const shown = byCost(rows).slice(0, TOP);
  if (shown.length === 0) return h('p', { class: 'muted' }, 'No usage in this range.');
  return table([
    { label, cell: (row) => row[field] },
    { label: 'Requests', num: true, cell: (row) => count(row.requests) },
    { label: 'Tokens', num: true, cell: (row) => count(BigInt(row.prompt_tokens) + BigInt(row.completion_tokens)) },
    { label: 'Cost', num: true, cell: (row) => dollars(row.cost_usd) },
  ], shown, { rowAttributes: (row) => ({ 'data-name': row[field] }) });
}

// Tenants with a budget, by share of it spent this month, highest first.
function closestToBudget(tenants, spendRows) {
  const spent = new Map(spendRows.map((row) => [row.tenant, nanos(row.cost_usd)]));
  const rows = tenants
    .filter((tenant) => tenant.monthly_budget_usd !== null)
    .map((tenant) => {
      const used = spent.get(tenant.name) ?? 0n;
      const budget = nanos(tenant.monthly_budget_usd);
      return { tenant, used, budget, share: percent(used, budget) };
    })
    .sort((a, b) => (b.share.tenths > a.share.tenths ? 1 : b.share.tenths < a.share.tenths ? -1 : 0))
    .slice(0, TOP);
  if (rows.length === 0) return h('p', { class: 'muted' }, 'No tenant has a monthly budget.');
  return table([
    { label: 'Tenant', cell: (row) => row.tenant.name },
    { label: 'Used', num: true, cell: (row) => h('span', {}, row.share.text, meter(row.share.tenths)) },
    { label: 'Spent', num: true, cell: (row) => dollars(usd(row.used)) },
    { label: 'Budget', num: true, cell: (row) => dollars(row.tenant.monthly_budget_usd) },
  ], rows, { rowAttributes: (row) => ({ 'data-name': row.tenant.name }) });
}

// A bar in steps of 5 % (classes, since inline styles are refused).
function meter(tenths) {
  const step = Math.min(100, Number(tenths / 50n) * 5);
  const level = tenths >= 1000n ? 'over' : tenths >= 800n ? 'warn' : '';
  return h('div', { class: `meter ${level}` }, h('span', { class: `w${step}` }));
}
