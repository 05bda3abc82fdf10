// Usage explorer: one `GET /admin/v1/usage` report (the CLI's `llmgw
// usage`), grouped and filtered as asked, as a chart and a table, and the
// same report as CSV: the download link is that very query with
// format=csv, so the file holds exactly what is shown.

import * as api from './api.js';
import { h, table } from './dom.js';
import { nanos, dollars, count, asFloat, byCost } from './money.js';
import { series, breakdown } from './chart.js';

const DIMENSIONS = ['tenant', 'key', 'model', 'provider', 'day', 'month'];
// The JSON field of each dimension (`key` groups are in `key_id`).
const FIELD = { tenant: 'tenant', key: 'key_id', model: 'model', provider: 'provider', day: 'day', month: 'month' };
const CHART_GROUPS = 20;

// The current UTC month, as the API's default range: [first day, first day
// of the next month).
export function thisMonth() {
  const now = new Date();
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  return { from: first.toISOString().slice(0, 10), to: next.toISOString().slice(0, 10) };
}

function daysAgo(days) {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - days)).toISOString().slice(0, 10);
}

// From / to (exclusive) inputs with shortcuts; `apply({from, to})`.
export function rangeForm(from, to, apply) {
  const fromBox = h('input', { type: 'date', id: 'range-from', value: from, required: true });
  const toBox = h('input', { type: 'date', id: 'range-to', value: to, required: true });
  const shortcut = (label, range) => h('button', { type: 'button', class: 'small', onclick: () => apply(range()) }, label);
  return h('form', {
    class: 'toolbar', id: 'range-form',
    onsubmit: (event) => { event.preventDefault(); apply({ from: fromBox.value, to: toBox.value }); },
  },
  h('label', {}, 'From (UTC)', fromBox),
  h('label', {}, 'To (exclusive)', toBox),
  h('button', { type: 'submit', id: 'range-apply' }, 'Apply'),
  shortcut('This month', thisMonth),
  shortcut('Last 7 days', () => ({ from: daysAgo(6), to: daysAgo(-1) })),
  shortcut('Last 30 days', () => ({ from: daysAgo(29), to: daysAgo(-1) })));
}

export async function render(root, { params, navigate }) {
  const month = thisMonth();
  const query = {
    from: params.get('from') || month.from,
    to: params.get('to') || month.to,
    group_by: params.has('group_by') ? params.get('group_by') : 'model',
    tenant: params.get('tenant') || '',
    key_id: params.get('key_id') || '',
  };
  const groups = query.group_by.split(',').filter(Boolean);
  root.append(h('h1', {}, 'Usage explorer'), filters(query, groups, navigate));
  const report = await api.get('/admin/v1/usage', query);
  const csv = api.url('/admin/v1/usage', { ...query, format: 'csv' });
  const chart = h('div', { class: 'chart', id: 'usage-chart' });
  root.append(
    h('div', { class: 'card' }, h('h2', {}, `Cost ${describe(report)}`), chart),
    h('div', { class: 'card' },
      h('div', { class: 'toolbar' },
        h('h2', {}, `${count(report.rows.length)} rows, total ${dollars(report.total.cost_usd)}`),
        h('span', { class: 'spacer' }),
        h('a', { class: 'button', id: 'csv-download', href: csv, download: `usage-${query.from}-${query.to}.csv` }, 'Download CSV')),
      reportTable(report)),
  );
  draw(chart, report, groups);
}

function filters(query, groups, navigate) {
  const boxes = DIMENSIONS.map((name) => h('input', { type: 'checkbox', id: `group-${name}`, value: name, checked: groups.includes(name) }));
  const tenant = h('input', { id: 'filter-tenant', value: query.tenant, placeholder: 'every tenant' });
  const key = h('input', { id: 'filter-key', value: query.key_id, placeholder: 'every key' });
  const from = h('input', { type: 'date', id: 'usage-from', value: query.from, required: true });
  const to = h('input', { type: 'date', id: 'usage-to', value: query.to, required: true });
  return h('form', {
    class: 'card toolbar', id: 'usage-form',
    onsubmit: (event) => {
      event.preventDefault();
      const next = new URLSearchParams({
        from: from.value,
        to: to.value,
        group_by: boxes.filter((box) => box.checked).map((box) => box.value).join(','),
      });
      if (tenant.value.trim()) next.set('tenant', tenant.value.trim());
      if (key.value.trim()) next.set('key_id', key.value.trim());
      navigate('usage', next);
    },
  },
  h('label', {}, 'From (UTC)', from),
  h('label', {}, 'To (exclusive)', to),
  h('label', {}, 'Tenant', tenant),
  h('label', {}, 'Key id', key),
  h('div', {}, h('div', { class: 'muted' }, 'Group by'),
    h('div', { class: 'checks' }, DIMENSIONS.map((name, index) => h('label', {}, boxes[index], name)))),
  h('button', { type: 'submit', class: 'primary', id: 'usage-show' }, 'Show'));
}

function describe(report) {
  const by = report.group_by.length ? ` by ${report.group_by.join(', ')}` : '';
  const only = [report.tenant && `tenant ${report.tenant}`, report.key_id && `key ${report.key_id}`].filter(Boolean);
  return `${by}, ${report.from} to ${report.to} (exclusive)${only.length ? `, ${only.join(', ')}` : ''}`;
}

// The rows in the API's order (the CLI's), then the total.
function reportTable(report) {
  const columns = report.group_by.map((name) => ({ label: name, cell: (row) => row[FIELD[name]] ?? '' }));
  const sums = [
    ['Requests', 'requests'], ['Prompt', 'prompt_tokens'], ['Completion', 'completion_tokens'],
    ['Cached', 'cached_tokens'], ['Reasoning', 'reasoning_tokens'],
  ].map(([label, field]) => ({ label, num: true, cell: (row) => count(row[field]) }));
  columns.push(...sums, { label: 'Cost (USD)', num: true, cell: (row) => dollars(row.cost_usd) });
  if (columns.length > sums.length + 1) {
    columns[0] = { ...columns[0], cell: (row) => (row === report.total ? 'total' : row[FIELD[report.group_by[0]]] ?? '') };
  }
  // Ungrouped, the one row is the total: shown once, as the CLI does.
  return table(columns, report.group_by.length ? report.rows : [], { total: report.total, id: 'usage-table' });
}

function draw(element, report, groups) {
  const time = groups.length === 1 && (groups[0] === 'day' || groups[0] === 'month');
  if (time) {
    const field = groups[0];
    return series(element, report.rows.map((row) => row[field]), report.rows.map((row) => asFloat(nanos(row.cost_usd))),
      report.rows.map((row) => Number(row.prompt_tokens) + Number(row.completion_tokens)));
  }
  const rows = groups.length ? byCost(report.rows).slice(0, CHART_GROUPS) : [{ ...report.total, label: 'total' }];
  const label = (row) => (groups.length ? groups.map((name) => row[FIELD[name]]).join(' · ') : row.label);
  return breakdown(element, rows.map(label), rows.map((row) => asFloat(nanos(row.cost_usd))));
}
