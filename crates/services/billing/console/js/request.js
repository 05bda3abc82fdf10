// One request: every attempt the ledger holds for a request id (retries
// and fallbacks), with provider, deployment, tokens, cost, status and
// timings: `GET /admin/v1/usage/requests/{id}`.

import * as api from './api.js';
import { h, table, badge, time } from './dom.js';
import { nanos, usd, dollars, count } from './money.js';

export async function render(root, { params, navigate }) {
  const id = params.get('id') || '';
  const box = h('input', { id: 'request-id', class: 'wide', value: id, placeholder: 'request id (x-request-id of the answer)', required: true });
  root.append(
    h('h1', {}, 'One request'),
    h('form', {
      class: 'card inline', id: 'request-form',
      onsubmit: (event) => { event.preventDefault(); navigate('request', new URLSearchParams({ id: box.value.trim() })); },
    }, h('label', {}, 'Request id', box), h('button', { type: 'submit', class: 'primary', id: 'request-show' }, 'Look up')),
  );
  if (!id) return;
  let answer;
  try {
    answer = await api.get(api.path('usage', 'requests', id));
  } catch (error) {
    if (error.status === 404) {
      root.append(h('p', { class: 'notice', id: 'request-missing' }, error.message));
      return;
    }
    throw error;
  }
  const attempts = answer.attempts;
  const cost = attempts.reduce((sum, attempt) => sum + nanos(attempt.cost_usd), 0n);
  const tokens = attempts.reduce((sum, attempt) => sum + BigInt(attempt.prompt_tokens) + BigInt(attempt.completion_tokens), 0n);
  const first = attempts[0];
  root.append(h('div', { class: 'card' },
    h('h2', {}, `${attempts.length} attempt${attempts.length === 1 ? '' : 's'} · ${dollars(usd(cost))} · ${count(tokens)} tokens`),
    h('p', { class: 'muted' }, `tenant ${first.tenant} · key ${first.key_id} · model ${first.model}`),
    table([
      { label: '#', num: true, cell: (row) => row.attempt },
      { label: 'Status', cell: (row) => badge(row.status === 'ok' ? 'ok' : row.status) },
      { label: 'Provider', cell: (row) => row.provider },
      { label: 'Deployment', cell: (row) => row.deployment },
      { label: 'Upstream model', cell: (row) => row.upstream_model },
      { label: 'Prompt', num: true, cell: (row) => count(row.prompt_tokens) },
      { label: 'Completion', num: true, cell: (row) => count(row.completion_tokens) },
      { label: 'Cached', num: true, cell: (row) => count(row.cached_tokens) },
      { label: 'Reasoning', num: true, cell: (row) => count(row.reasoning_tokens) },
      { label: 'Cost (USD)', num: true, cell: (row) => dollars(row.cost_usd) },
      { label: 'Estimated', cell: (row) => (row.estimated ? 'yes' : 'no') },
      { label: 'Finish', cell: (row) => row.finish_reason },
      { label: 'TTFT ms', num: true, cell: (row) => count(row.ttft_ms) },
      { label: 'Duration ms', num: true, cell: (row) => count(row.duration_ms) },
      { label: 'Started', cell: (row) => time(row.started_at_ms) },
    ], attempts, { id: 'attempts', compact: true, rowAttributes: (row) => ({ 'data-attempt': row.attempt }) })));
}
