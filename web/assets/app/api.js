// The platform's HTTP API, same-origin through the gateway: every call has a deadline, carries
// the access token (refreshed once on a 401), and fails with an ApiError saying what happened.

import { accessToken, refresh } from './auth.js';
import { settings } from './config.js';

export class ApiError extends Error {
  /**
   * kind: 'timeout' (no answer in time: a write may or may not have happened), 'network',
   * 'unavailable' (503/502/504), 'unauthorized', 'forbidden', 'problem' (another 4xx/5xx).
   */
  constructor(kind, { status = 0, problem = null, retryAfter = null, message } = {}) {
    super(message || problem?.detail || problem?.title || kind);
    this.kind = kind;
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }

  /** Field errors of a problem+json: `{field: message}`. */
  get fields() {
    const fields = {};
    for (const { field, message } of this.problem?.errors ?? []) fields[field] = message;
    return fields;
  }
}

async function send(path, { method = 'GET', body, headers = {}, accept = 'application/json' }) {
  const token = await accessToken();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: {
        Accept: accept,
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...(body ? { 'Content-Type': 'application/json' } : {}),
        ...headers,
      },
      body: body ? JSON.stringify(body) : undefined,
      cache: 'no-store',
      signal: AbortSignal.timeout(settings().request_timeout_ms),
    });
  } catch (error) {
    if (error.name === 'TimeoutError' || error.name === 'AbortError') throw new ApiError('timeout');
    throw new ApiError('network', { message: error.message });
  }
  return response;
}

/**
 * Calls the API; `{status, headers, body}` on a 2xx (body: JSON, or text for CSV). A 401 is
 * retried once with refreshed tokens (safe: a write carries its Idempotency-Key).
 */
export async function api(path, options = {}) {
  let response = await send(path, options);
  if (response.status === 401 && (await refresh())) response = await send(path, options);
  const text = await response.text();
  const json = () => {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  };
  if (response.ok) {
    const isJson = (response.headers.get('content-type') || '').includes('json');
    return { status: response.status, headers: response.headers, body: isJson ? json() : text };
  }
  const problem = json();
  const retryAfter = Number(response.headers.get('retry-after')) || null;
  const kind =
    {
      401: 'unauthorized',
      403: 'forbidden',
      502: 'unavailable',
      503: 'unavailable',
      504: 'unavailable',
    }[response.status] || 'problem';
  throw new ApiError(kind, { status: response.status, problem, retryAfter });
}

const merchantPath = (merchant) => `/v1/merchants/${encodeURIComponent(merchant)}`;

export function recordEntry(merchant, entry, idempotencyKey) {
  return api(`${merchantPath(merchant)}/entries`, {
    method: 'POST',
    body: entry,
    headers: { 'Idempotency-Key': idempotencyKey },
  });
}

export function reverseEntry(merchant, id, idempotencyKey) {
  return api(`${merchantPath(merchant)}/entries/${encodeURIComponent(id)}/reversal`, {
    method: 'POST',
    body: {},
    headers: { 'Idempotency-Key': idempotencyKey },
  });
}

export function entriesPage(merchant, date, { limit = 10, cursor } = {}) {
  const query = new URLSearchParams({ date, limit: String(limit) });
  if (cursor) query.set('cursor', cursor);
  return api(`${merchantPath(merchant)}/entries?${query}`);
}

/** Every entry of a day, a page of 200 at a time (the ledger's count of the day). */
export async function allEntries(merchant, date) {
  const items = [];
  let cursor;
  do {
    const page = await entriesPage(merchant, date, { limit: 200, cursor });
    items.push(...page.body.items);
    cursor = page.body.next_cursor;
  } while (cursor);
  return items;
}

/** A day's balance, and whether it was served stale from the cache (`Cache-Status`). */
export async function dayBalance(merchant, date) {
  const answer = await api(`${merchantPath(merchant)}/balances/${date}`);
  return { ...answer.body, stale: isStale(answer.headers) };
}

export async function report(merchant, from, to) {
  const answer = await api(`${merchantPath(merchant)}/balances?${new URLSearchParams({ from, to })}`);
  return { ...answer.body, stale: isStale(answer.headers) };
}

export async function reportCsv(merchant, from, to) {
  const query = new URLSearchParams({ from, to, format: 'csv' });
  return (await api(`${merchantPath(merchant)}/balances?${query}`, { accept: 'text/csv' })).body;
}

function isStale(headers) {
  return /stale/i.test(headers.get('cache-status') || '');
}
