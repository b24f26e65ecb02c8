// A merchant's books: the entry form, today's entries and the month, kept current by polling,
// with what the architecture implies said plainly: entries the balance does not count yet
// (the ledger's count of today against the balance's entry_count), the consolidation down while
// entries are still accepted, answers served stale from the cache.

import { ApiError, allEntries, dayBalance, report as readReport } from './api.js';
import { settings, today as todayIn } from './config.js';
import { h, replace } from './dom.js';
import { entryForm } from './entry-form.js';
import { dateTime, t, time } from './i18n.js';
import { monthRange, monthView } from './month.js';
import { todayEntries } from './today.js';

/** Poll quickly while the balance is behind or the consolidation is down, else slowly. */
const FAST_POLL_MS = 1500;
const SLOW_POLL_MS = 15000;

export function dashboard({ merchant, month, onMonth, onForbidden }) {
  const config = settings();
  const today = todayIn();
  const keptKey = `cashflow.report.${merchant}.${month}`;
  let stopped = false;
  let timer = null;
  let polling = null;
  let state = {
    ledgerCount: null,
    ledgerDown: false,
    consolidationDown: false,
    balanceCount: null,
    balanceRead: null,
    stale: null,
  };

  // A change of ours (an entry recorded, reversed) reads everything again at once, after the
  // read in flight if there is one (it may have started before the change).
  let again = false;
  const refreshSoon = () => {
    again = true;
    clearTimeout(timer);
    timer = setTimeout(poll, 0);
  };
  const form = entryForm({ merchant, onRecorded: refreshSoon, onForbidden });
  const entries = todayEntries({ merchant, onReversed: refreshSoon, onForbidden });
  const view = monthView({ merchant, month, today, currency: config.currency, onMonth });
  const notices = h('div', { id: 'notices', class: 'notices' });
  const pending = h('p', { id: 'pending', class: 'pending', role: 'status' });

  const section = (id, title, ...content) =>
    h('section', { id, class: 'card', 'aria-labelledby': `${id}-title` },
      h('h2', { id: `${id}-title` }, title), ...content);
  const element = h('div', { class: 'dashboard' },
    notices,
    h('div', { class: 'columns' },
      section('record', t('recordTitle'), form),
      section('today', t('todayTitle'), pending, entries.element)),
    section('month', `${t('monthTitle')} — ${merchant}`, view.element));

  const kept = () => {
    try {
      return JSON.parse(sessionStorage.getItem(keptKey));
    } catch {
      return null;
    }
  };

  const renderNotices = () => {
    const items = [];
    if (state.ledgerDown) items.push(h('p', { id: 'ledger-down', class: 'banner error', role: 'alert' }, t('ledgerDown')));
    if (state.consolidationDown) {
      items.push(h('div', { id: 'consolidation-down', class: 'banner warning', role: 'alert' },
        h('p', {}, t('consolidationDown')),
        state.balanceRead ? h('p', {}, t('lastRead', { time: time(state.balanceRead, config.time_zone) })) : null));
    }
    if (state.stale && !state.consolidationDown) {
      items.push(h('p', { id: 'stale', class: 'banner warning', role: 'status' },
        t('stale', { asOf: state.stale === true ? '—' : dateTime(state.stale, config.time_zone) })));
    }
    replace(notices, ...items);
    if (state.ledgerCount === null || state.balanceCount === null) {
      pending.removeAttribute('data-count');
      replace(pending);
      return;
    }
    const count = Math.max(0, state.ledgerCount - state.balanceCount);
    if (pending.dataset.count === String(count)) return;
    pending.dataset.count = String(count);
    pending.classList.toggle('behind', count > 0);
    pending.textContent = count > 0 ? t('pending', { count }) : t('pendingNone');
  };

  const poll = async () => {
    if (stopped) return;
    if (polling) return polling;
    again = false;
    polling = (async () => {
      const { from, to } = monthRange(month, today);
      const currentMonth = month === today.slice(0, 7);
      const [ledger, consolidation] = await Promise.allSettled([
        allEntries(merchant, today),
        Promise.all([
          readReport(merchant, from, to),
          currentMonth ? null : dayBalance(merchant, today),
        ]),
      ]);
      const forbidden = [ledger, consolidation].some(
        (r) => r.status === 'rejected' && r.reason instanceof ApiError && r.reason.kind === 'forbidden');
      if (forbidden) {
        stopped = true;
        return onForbidden();
      }
      if (ledger.status === 'fulfilled') {
        state.ledgerDown = false;
        state.ledgerCount = ledger.value.length;
        entries.update(ledger.value);
      } else {
        state.ledgerDown = true;
      }
      if (consolidation.status === 'fulfilled') {
        const [monthReport, todayBalance] = consolidation.value;
        const todayDay = todayBalance ?? monthReport.days.find((d) => d.date === today);
        state.consolidationDown = false;
        state.balanceCount = todayDay ? todayDay.entry_count : 0;
        state.balanceRead = new Date().toISOString();
        const stale = monthReport.stale || todayBalance?.stale;
        const asOf = monthReport.days.map((d) => d.as_of).filter(Boolean).sort().pop();
        state.stale = stale ? asOf || true : null;
        sessionStorage.setItem(keptKey, JSON.stringify({ report: monthReport, balanceCount: state.balanceCount, read: state.balanceRead }));
        view.update(monthReport);
      } else {
        const reason = consolidation.reason;
        if (!(reason instanceof ApiError) || reason.kind === 'problem' || reason.kind === 'unauthorized') {
          console.error('reading the balances failed', reason);
        }
        state.consolidationDown = true;
        // The last balances read, said to be so (the banner tells when they were read).
        const last = kept();
        if (last && state.balanceCount === null) {
          state.balanceCount = last.balanceCount;
          state.balanceRead = last.read;
        }
        if (last) view.update(last.report);
        else view.update(null);
      }
      renderNotices();
    })().finally(() => {
      polling = null;
      if (stopped) return;
      const behind = state.ledgerCount !== state.balanceCount;
      const fast = again || state.consolidationDown || state.ledgerDown || behind;
      clearTimeout(timer);
      timer = setTimeout(poll, again ? 0 : fast ? FAST_POLL_MS : SLOW_POLL_MS);
    });
    return polling;
  };

  poll();
  return {
    element,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
