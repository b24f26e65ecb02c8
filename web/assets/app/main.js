// The cash-flow page: signs the merchant in, then shows their books at
// #/<merchant>/<YYYY-MM> (another merchant's is the 403 view).

import * as auth from './auth.js';
import { loadConfig, settings, today } from './config.js';
import { dashboard } from './dashboard.js';
import { h, replace } from './dom.js';
import { LANGUAGES, currentLanguage, setLanguage, t } from './i18n.js';

const main = document.getElementById('main');
const account = document.getElementById('account');
let current = null; // the dashboard shown, stopped when the view changes
let notice = null; // a message key for the signed-out view

function route() {
  const [, merchant, month] = location.hash.match(/^#\/([^/]+)\/(\d{4}-\d{2})$/) || [];
  return merchant ? { merchant: decodeURIComponent(merchant), month } : null;
}

function go(merchant, month) {
  location.hash = `#/${encodeURIComponent(merchant)}/${month}`;
}

/** Moves the focus to the new view's heading, for screen readers and keyboards. */
function focusHeading() {
  const heading = main.querySelector('h2');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
}

function renderChrome() {
  document.documentElement.lang = currentLanguage();
  document.title = t('title');
  document.getElementById('app-title').textContent = t('title');
  document.getElementById('skip-link').textContent = t('skip');
  document.getElementById('footer-text').textContent = t('footer');
  const session = auth.currentSession();
  const language = h('select', { id: 'language' },
    LANGUAGES.map(({ code, name }) => h('option', { value: code, lang: code, selected: code === currentLanguage() }, name)));
  language.addEventListener('change', () => {
    setLanguage(language.value);
    render();
    document.getElementById('language').focus();
  });
  const items = [h('span', { class: 'control' }, h('label', { for: 'language' }, t('language')), language)];
  if (session) {
    const merchants = session.identity?.merchants ?? [];
    const shown = route()?.merchant;
    if (merchants.length > 1) {
      const select = h('select', { id: 'merchant' },
        merchants.map((m) => h('option', { value: m, selected: m === shown }, m)));
      select.addEventListener('change', () => go(select.value, route()?.month ?? today().slice(0, 7)));
      items.push(h('span', { class: 'control' }, h('label', { for: 'merchant' }, t('merchant')), select));
    }
    items.push(
      h('span', { id: 'user', class: 'user' }, t('signedInAs', { user: session.identity?.name ?? '?' })),
      h('button', { type: 'button', id: 'sign-out', onclick: () => auth.signOut() }, t('signOut')),
    );
  }
  replace(account, ...items);
}

function signedOutView() {
  const message = notice ? h('p', { id: 'notice', class: 'banner info', role: 'status' }, notice) : null;
  replace(main,
    h('section', { id: 'signed-out', class: 'card narrow', 'aria-labelledby': 'signin-title' },
      h('h2', { id: 'signin-title' }, t('signInTitle')),
      message,
      h('p', {}, t('signInText')),
      h('button', { type: 'button', id: 'sign-in', class: 'primary', onclick: () => auth.signIn() }, t('signIn'))));
}

function forbiddenView(merchant) {
  current?.stop();
  current = null;
  const own = auth.currentSession()?.identity?.merchants?.[0];
  replace(main,
    h('section', { id: 'forbidden', class: 'card narrow', 'aria-labelledby': 'forbidden-title' },
      h('h2', { id: 'forbidden-title' }, t('forbiddenTitle')),
      h('p', {}, t('forbiddenText', { merchant })),
      own ? h('p', {}, h('a', { href: `#/${encodeURIComponent(own)}/${today().slice(0, 7)}`, id: 'own-books' },
        t('forbiddenBack', { merchant: own }))) : null));
  focusHeading();
}

function render() {
  renderChrome();
  current?.stop();
  current = null;
  const session = auth.currentSession();
  if (!session) return signedOutView();
  const view = route();
  if (!view) {
    const merchant = session.identity?.merchants?.[0];
    if (merchant) return go(merchant, today().slice(0, 7));
    return forbiddenView('—');
  }
  current = dashboard({
    merchant: view.merchant,
    month: view.month,
    onMonth: (month) => go(view.merchant, month),
    onForbidden: () => forbiddenView(view.merchant),
  });
  replace(main, current.element);
}

async function start() {
  // The skip link moves the focus without touching the hash (the hash is the route).
  document.getElementById('skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    main.focus();
  });
  await loadConfig();
  document.documentElement.lang = currentLanguage();
  try {
    await auth.completeSignIn();
  } catch (error) {
    notice = t('loginFailed', { reason: error.message });
  }
  const kept = auth.takeNotice();
  if (kept) notice = t(kept);
  auth.start();
  auth.onSessionChange((session) => {
    if (!session) notice ??= t('sessionEnded');
    // A refresh changes tokens only: the view stays as it is.
    if (!session || !current) render();
  });
  window.addEventListener('hashchange', () => {
    render();
    focusHeading();
  });
  render();
}

start().catch((error) => {
  console.error(error);
  replace(main, h('p', { role: 'alert', class: 'banner error' }, t('error', { reason: error.message })));
});
