// The deployment's settings, from /config.json: the identity provider's endpoints (paths under
// /identity/ behind the local gateway, or the provider's own URLs in AWS) and the merchants'
// book rules (time zone, currency, backdating window).

let config = null;

export async function loadConfig() {
  const response = await fetch('/config.json', { cache: 'no-store', signal: AbortSignal.timeout(10000) });
  if (!response.ok) throw new Error(`/config.json answered ${response.status}`);
  config = await response.json();
  return config;
}

export function settings() {
  return config;
}

/** Today's date (YYYY-MM-DD) in the merchants' time zone. */
export function today() {
  // en-CA formats dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat('en-CA', {
    timeZone: config.time_zone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).format(new Date());
}

/** `isoDate` moved by `days`. */
export function addDays(isoDate, days) {
  const [y, m, d] = isoDate.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}
