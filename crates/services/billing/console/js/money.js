// Money as the admin API gives it: exact USD decimal strings ("12.345") and
// integer nano-USD. Amounts are compared and divided as BigInt nano-USD,
// never as floats, so what the page shows agrees with the CLI and the CSV
// to the nano-dollar. Floats are used only to draw charts.

const NANO = 1000000000n;

// "12.5" -> 12500000000n
export function nanos(usd) {
  const [whole, fraction = ''] = String(usd).split('.');
  return BigInt(whole || '0') * NANO + BigInt((fraction + '000000000').slice(0, 9));
}

// 12500000000n -> "12.5", exactly as the server's format_usd.
export function usd(nanoUsd) {
  const whole = nanoUsd / NANO;
  const fraction = (nanoUsd % NANO).toString().padStart(9, '0').replace(/0+$/, '');
  return fraction ? `${whole}.${fraction}` : `${whole}`;
}

// "$1,234.5" from "1234.5": thousands grouped, every decimal kept.
export function dollars(usdText) {
  const [whole, fraction] = String(usdText).split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return fraction ? `$${grouped}.${fraction}` : `$${grouped}`;
}

export function count(value) {
  return BigInt(value ?? 0).toLocaleString('en-US');
}

// Spent / budget as a percentage with one decimal, rounded down, and the
// number of tenths (for bars and sorting).
export function percent(spent, budget) {
  if (budget === 0n) return { text: spent > 0n ? '∞' : '0.0%', tenths: spent > 0n ? 1000000n : 0n };
  const tenths = (spent * 1000n) / budget;
  return { text: `${tenths / 10n}.${tenths % 10n}%`, tenths };
}

// For charts only.
export function asFloat(nanoUsd) {
  return Number(nanoUsd) / 1e9;
}

// Sorts report rows by cost, highest first (ties by their group values).
export function byCost(rows) {
  return [...rows].sort((a, b) => {
    const difference = nanos(b.cost_usd) - nanos(a.cost_usd);
    return difference > 0n ? 1 : difference < 0n ? -1 : 0;
  });
}
