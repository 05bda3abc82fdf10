// Building the page: elements from data with textContent only (names come
// from tenants, clients and providers; they never become markup), tables,
// and the confirmation dialog every change goes through.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'value') element.value = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

export function clear(element) {
  while (element.firstChild) element.firstChild.remove();
  return element;
}

// columns: [{label, cell: row => node or text, num: bool}]; rows: data;
// total: an optional last row (same columns), bold; rowAttributes(row):
// attributes of each <tr> (ids for tests and updates).
export function table(columns, rows, { total, rowAttributes, id, compact = false } = {}) {
  const head = h('tr', {}, columns.map((column) => h('th', { class: column.num ? 'num' : null }, column.label)));
  const line = (row, attributes) => h('tr', attributes, columns.map((column) =>
    h('td', { class: column.num ? 'num' : null }, column.cell(row))));
  const body = h('tbody', {}, rows.map((row) => line(row, rowAttributes ? rowAttributes(row) : {})));
  if (total) body.append(line(total, { class: 'total' }));
  return h('div', { class: 'scroll' }, h('table', { id, class: compact ? 'compact' : null }, h('thead', {}, head), body));
}

export function badge(text) {
  return h('span', { class: `badge ${text}` }, text);
}

// "YYYY-MM-DD HH:MM UTC", as the CLI prints times.
export function time(ms) {
  if (ms === null || ms === undefined) return 'never';
  const date = new Date(ms);
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

// Asks before any change. Resolves to true (or the input's text when
// `input` is given), or null when cancelled.
export function confirmChange(message, { input = null, value = '', confirmLabel = 'Confirm' } = {}) {
  const dialog = document.getElementById('confirm');
  const field = document.getElementById('confirm-field');
  const box = document.getElementById('confirm-input');
  document.getElementById('confirm-message').textContent = message;
  document.getElementById('confirm-ok').textContent = confirmLabel;
  field.hidden = input === null;
  document.getElementById('confirm-field-label').textContent = input || '';
  box.value = value;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    const cancel = document.getElementById('confirm-cancel');
    const onCancel = () => dialog.close('cancel');
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('close', () => {
      cancel.removeEventListener('click', onCancel);
      if (dialog.returnValue !== 'ok') resolve(null);
      else resolve(input === null ? true : box.value);
    }, { once: true });
    dialog.showModal();
    (input === null ? document.getElementById('confirm-ok') : box).focus();
  });
}
