// Charts with the vendored uPlot: a daily (or monthly) series of cost and
// tokens, and bars for a categorical breakdown. Amounts reach the chart as
// floats; the tables beside the charts keep the exact figures.

import { h, clear } from './dom.js';

const COST = '#2f6fde';
const TOKENS = '#9aa3b5';

function width(element) {
  return Math.max(320, element.clientWidth || element.parentElement.clientWidth - 36);
}

function empty(element, message) {
  clear(element).append(h('div', { class: 'empty' }, message));
}

const DAY = 86400;
// Bars and tokens start from zero: a chart whose axis starts at the
// smallest day exaggerates differences.
const fromZero = (_, _min, max) => [0, max > 0 ? max * 1.1 : 1];

const money = (value) => (value === null || value === undefined ? '' : `$${value.toFixed(value < 1 ? 4 : 2)}`);
const compact = (value) => (value === null || value === undefined ? '' : Intl.NumberFormat('en-US', { notation: 'compact' }).format(value));

// days: ['2026-11-01', ...] (or months 'YYYY-MM'), costs in USD (floats),
// tokens (numbers), one per day.
export function series(element, days, costs, tokens) {
  if (!window.uPlot) return empty(element, 'Chart library not loaded.');
  if (days.length === 0) return empty(element, 'No usage in this range.');
  clear(element);
  const monthly = days[0].length === 7;
  const xs = days.map((day) => Date.parse(monthly ? `${day}-01T00:00:00Z` : `${day}T00:00:00Z`) / 1000);
  const bars = window.uPlot.paths.bars({ size: [0.6, 48] });
  const half = (monthly ? 15 : 0.5) * DAY;
  const label = (seconds) => new Date(seconds * 1000).toISOString().slice(monthly ? 0 : 5, monthly ? 7 : 10);
  const options = {
    width: width(element),
    height: 260,
    tzDate: (seconds) => window.uPlot.tzDate(new Date(seconds * 1000), 'Etc/UTC'),
    scales: {
      x: { time: true, range: (_, min, max) => [min - half, max + half] },
      cost: { range: fromZero },
      tokens: { range: fromZero },
    },
    axes: [
      // One tick per day (or month) with data, labelled as the table is.
      { splits: () => xs, values: (_, splits) => splits.map(label), space: 40 },
      { scale: 'cost', values: (_, values) => values.map(money), size: 70 },
      { scale: 'tokens', side: 1, values: (_, values) => values.map(compact), grid: { show: false } },
    ],
    series: [
      { label: 'day' },
      { label: 'cost (USD)', scale: 'cost', stroke: COST, fill: 'rgba(47, 111, 222, 0.25)', paths: bars, value: (_, value) => money(value) },
      { label: 'tokens', scale: 'tokens', stroke: TOKENS, width: 2, value: (_, value) => compact(value) },
    ],
    legend: { live: true },
  };
  return new window.uPlot(options, [xs, costs, tokens], element);
}

// labels: group names; costs: USD floats. Highest first is the caller's
// choice of order.
export function breakdown(element, labels, costs) {
  if (!window.uPlot) return empty(element, 'Chart library not loaded.');
  if (labels.length === 0) return empty(element, 'No usage in this range.');
  clear(element);
  const xs = labels.map((_, index) => index);
  const options = {
    width: width(element),
    height: 260,
    scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: fromZero } },
    axes: [
      {
        splits: () => xs,
        values: (_, splits) => splits.map((index) => shorten(labels[index] ?? '')),
        rotate: labels.length > 6 ? -35 : 0,
        size: labels.length > 6 ? 110 : 40,
        gap: 6,
      },
      { values: (_, values) => values.map(money), size: 70 },
    ],
    series: [
      { label: 'group', value: (_, value) => labels[value] ?? '' },
      { label: 'cost (USD)', stroke: COST, fill: 'rgba(47, 111, 222, 0.35)', paths: window.uPlot.paths.bars({ size: [0.7, 80] }), points: { show: false }, value: (_, value) => money(value) },
    ],
  };
  return new window.uPlot(options, [xs, costs], element);
}

function shorten(text) {
  return text.length > 24 ? `${text.slice(0, 23)}…` : text;
}
