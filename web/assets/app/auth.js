// Sign-in: OpenID Connect Authorization Code with PKCE (S256) as a public client. The tokens
// live in sessionStorage only (this tab, gone when it closes; a reload keeps them), the access
// token is refreshed before it expires, and logout ends the session at the provider too.

import { settings } from './config.js';

const SESSION = 'cashflow.session';
const PENDING = 'cashflow.login';
const NOTICE = 'cashflow.notice';

let session = load();
let refreshing = null;
let started = false;
let timer = null;
const listeners = new Set();

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION));
  } catch {
    return null;
  }
}

function save(next) {
  session = next;
  if (next) sessionStorage.setItem(SESSION, JSON.stringify(next));
  else sessionStorage.removeItem(SESSION);
  schedule();
  for (const listener of listeners) listener(session);
}

/** Called with the session (or null) whenever it changes. */
export function onSessionChange(listener) {
  listeners.add(listener);
}

export function currentSession() {
  return session;
}

/** A message to show once after the next load (signed out, session ended). */
export function takeNotice() {
  const notice = sessionStorage.getItem(NOTICE);
  sessionStorage.removeItem(NOTICE);
  return notice;
}

function base64url(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function random() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

function redirectUri() {
  return `${location.origin}/`;
}

/** Goes to the provider's sign-in; comes back to the same view. */
export async function signIn() {
  const config = settings();
  const verifier = random();
  const pending = { state: random(), nonce: random(), verifier, returnTo: location.hash };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: config.client_id,
    redirect_uri: redirectUri(),
    scope: config.scope,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await challengeOf(verifier),
    code_challenge_method: 'S256',
  });
  location.assign(`${config.authorization_endpoint}?${query}`);
}

/** The claims of a JWT, unverified (an ID token straight from the token endpoint). */
function claimsOf(jwt) {
  const payload = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  const text = atob(payload);
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(text, (c) => c.charCodeAt(0))));
}

async function tokenRequest(form) {
  const config = settings();
  const response = await fetch(config.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: config.client_id, ...form }),
    cache: 'no-store',
    signal: AbortSignal.timeout(config.request_timeout_ms),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error_description || body.error || `token endpoint ${response.status}`);
    error.refused = response.status === 400 || response.status === 401;
    throw error;
  }
  return body;
}

function fromTokens(tokens, previous, nonce) {
  const config = settings();
  let identity = previous?.identity;
  if (tokens.id_token) {
    // Received over the back channel from the token endpoint: the checks of OIDC Core 3.1.3.7
    // that apply without verifying the signature (iss, aud, exp, nonce).
    const claims = claimsOf(tokens.id_token);
    const now = Date.now() / 1000;
    if (claims.iss !== config.issuer) throw new Error(`ID token from ${claims.iss}`);
    if (claims.aud !== config.client_id && !(claims.aud || []).includes?.(config.client_id)) {
      throw new Error('ID token for another client');
    }
    if (claims.exp < now) throw new Error('expired ID token');
    if (nonce !== undefined && claims.nonce !== nonce) throw new Error('ID token nonce mismatch');
    identity = {
      name: claims.name || claims.sub,
      merchants: claims.merchants || [],
      idToken: tokens.id_token,
    };
  }
  return {
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token ?? previous?.refreshToken,
    expiresAt: Date.now() + tokens.expires_in * 1000,
    lifetime: tokens.expires_in * 1000,
    identity,
  };
}

/**
 * The provider sent the browser back (`?code=` or `?error=`): exchanges the code, cleans the
 * URL. Returns the view's hash to go back to, or throws what went wrong.
 */
export async function completeSignIn() {
  const query = new URLSearchParams(location.search);
  if (!query.has('code') && !query.has('error')) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', `/${pending?.returnTo || ''}`);
  if (query.has('error')) throw new Error(query.get('error_description') || query.get('error'));
  if (!pending || query.get('state') !== pending.state) throw new Error('unexpected sign-in answer');
  const tokens = await tokenRequest({
    grant_type: 'authorization_code',
    code: query.get('code'),
    redirect_uri: redirectUri(),
    code_verifier: pending.verifier,
  });
  save(fromTokens(tokens, null, pending.nonce));
  return pending.returnTo || '';
}

/** New tokens from the refresh token; one refresh at a time. Ends the session if refused. */
export function refresh() {
  if (!session?.refreshToken) return Promise.resolve(null);
  refreshing ??= tokenRequest({ grant_type: 'refresh_token', refresh_token: session.refreshToken })
    .then((tokens) => {
      save(fromTokens(tokens, session));
      return session;
    })
    .catch((error) => {
      if (error.refused) {
        sessionStorage.setItem(NOTICE, 'sessionEnded');
        save(null);
      }
      return session;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

/** Refreshes a fifth of the lifetime (at most a minute) before expiry. */
function schedule() {
  clearTimeout(timer);
  if (!session || !started) return;
  const margin = Math.min(60000, session.lifetime / 5);
  const wait = Math.max(0, session.expiresAt - margin - Date.now());
  timer = setTimeout(refresh, wait);
}

/** A valid access token (refreshed first when it is about to expire), or null. */
export async function accessToken() {
  if (session && session.expiresAt - Date.now() < 5000) await refresh();
  return session?.accessToken ?? null;
}

/** Ends the session here and at the provider, which sends the browser back to `/`. */
export function signOut() {
  const config = settings();
  const idToken = session?.identity?.idToken;
  save(null);
  sessionStorage.setItem(NOTICE, 'signedOut');
  const query = new URLSearchParams({ client_id: config.client_id, post_logout_redirect_uri: redirectUri() });
  if (idToken) query.set('id_token_hint', idToken);
  location.assign(`${config.end_session_endpoint}?${query}`);
}

/** Starts refreshing the kept session (once the configuration is loaded). */
export function start() {
  started = true;
  schedule();
  // A tab put to sleep may miss its timer: check when it comes back.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') schedule();
  });
}
