// Amounts are decimal strings ("1234.56") in the API and integer minor units (BigInt) here:
// never floats, as in the services.

/** Minor units of a decimal string with at most 2 decimals ("-12.5" -> -1250n). */
export function toMinor(text) {
  const match = /^(-?)(\d+)(?:\.(\d{1,2}))?$/.exec(String(text).trim());
  if (!match) throw new Error(`not an amount: ${text}`);
  const [, sign, units, cents = ''] = match;
  const minor = BigInt(units) * 100n + BigInt(cents.padEnd(2, '0'));
  return sign ? -minor : minor;
}

/** The decimal string of minor units (-1250n -> "-12.50"). */
export function fromMinor(minor) {
  const negative = minor < 0n;
  const abs = negative ? -minor : minor;
  const units = abs / 100n;
  const cents = String(abs % 100n).padStart(2, '0');
  return `${negative ? '-' : ''}${units}.${cents}`;
}

/**
 * What a person typed as an amount, as the API's decimal string, or null. Both "1.234,56" and
 * "1,234.56" are read right: a separator followed by one or two final digits is the decimal
 * one; otherwise the language's own separator is, and the other one groups thousands.
 */
export function parseAmount(typed, decimalSeparator) {
  let text = String(typed).replace(/[\s\u00a0]|R\$|BRL/g, '');
  if (!/^[\d.,]+$/.test(text)) return null;
  const last = Math.max(text.lastIndexOf('.'), text.lastIndexOf(','));
  let separator = decimalSeparator;
  if (last >= 0 && /^\d{1,2}$/.test(text.slice(last + 1))) separator = text[last];
  const grouping = separator === ',' ? '.' : ',';
  text = text.split(grouping).join('');
  const parts = text.split(separator);
  if (parts.length > 2 || parts[0] === '') return null;
  const [units, cents = ''] = parts;
  if (cents.length > 2 || (parts.length === 2 && cents === '')) return null;
  const normalized = cents ? `${units}.${cents.padEnd(2, '0')}` : `${units}.00`;
  const minor = toMinor(normalized);
  return minor > 0n ? fromMinor(minor) : null;
}
