// Today's entries, ten to a page, each reversible once after a confirmation.

import { ApiError, reverseEntry } from './api.js';
import { settings } from './config.js';
import { h, replace } from './dom.js';
import { money, t, time } from './i18n.js';

const PAGE_SIZE = 10;

export function todayEntries({ merchant, onReversed, onForbidden }) {
  let items = [];
  let page = 0;
  let shown = null;
  /** Idempotency-Keys of reversals asked for and not yet answered, by entry id. */
  const reversalKeys = new Map();
  const body = h('div', { id: 'today-entries' });
  const status = h('p', { id: 'today-status', class: 'status', role: 'status' });
  const dialogTitle = h('h3', { id: 'confirm-title' }, t('confirmReverseTitle'));
  const dialogText = h('p', { id: 'confirm-text' });
  const dialogAlert = h('p', { class: 'alert', role: 'alert' });
  const confirmButton = h('button', { type: 'button', id: 'confirm-reverse', class: 'danger' }, t('confirm'));
  const cancelButton = h('button', { type: 'button', id: 'cancel-reverse' }, t('cancel'));
  const dialog = h('dialog', { id: 'reverse-dialog', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-text' },
    dialogTitle, dialogText, dialogAlert, h('div', { class: 'actions' }, confirmButton, cancelButton));
  let target = null;
  let opener = null;

  cancelButton.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => opener?.focus());
  confirmButton.addEventListener('click', async () => {
    const entry = target;
    if (!reversalKeys.has(entry.id)) reversalKeys.set(entry.id, crypto.randomUUID());
    confirmButton.disabled = true;
    replace(dialogAlert);
    try {
      await reverseEntry(merchant, entry.id, reversalKeys.get(entry.id));
      reversalKeys.delete(entry.id);
      dialog.close();
      status.textContent = t('reverseDone');
      onReversed();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.kind === 'forbidden') {
        dialog.close();
        return onForbidden();
      }
      dialogAlert.textContent = ['timeout', 'network', 'unavailable'].includes(error.kind)
        ? t('notAnswered')
        : t('error', { reason: error.message });
    } finally {
      confirmButton.disabled = false;
    }
  });

  const ask = (entry, button) => {
    target = entry;
    opener = button;
    replace(dialogAlert);
    dialogText.textContent = t('confirmReverse', {
      kind: t(entry.kind).toLowerCase(),
      amount: money(entry.amount, entry.currency),
      description: entry.description || '—',
    });
    dialog.showModal();
    cancelButton.focus();
  };

  const render = () => {
    if (items.length === 0) return replace(body, h('p', { id: 'no-entries' }, t('noEntries')));
    const pages = Math.ceil(items.length / PAGE_SIZE);
    page = Math.min(page, pages - 1);
    const reversed = new Set(items.map((e) => e.reverses_entry_id).filter(Boolean));
    const zone = settings().time_zone;
    const rows = items.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE).map((entry) => {
      let action;
      if (entry.reverses_entry_id) action = '';
      else if (reversed.has(entry.id)) action = h('span', { class: 'badge' }, t('reversed'));
      else {
        action = h('button', {
          type: 'button', class: 'reverse', 'data-entry': entry.id,
          'aria-label': `${t('reverse')}: ${t(entry.kind)} ${money(entry.amount, entry.currency)} ${entry.description || ''}`.trim(),
        }, t('reverse'));
        action.addEventListener('click', () => ask(entry, action));
      }
      return h('tr', { 'data-entry': entry.id, class: entry.kind },
        h('td', {}, time(entry.recorded_at, zone)),
        h('td', {}, entry.reverses_entry_id ? `${t('reversalOf')} (${t(entry.kind).toLowerCase()})` : t(entry.kind)),
        h('td', { class: 'number' }, money(entry.amount, entry.currency)),
        h('td', {}, entry.description || ''),
        h('td', {}, entry.category || ''),
        h('td', {}, action));
    });
    const nav = pages > 1
      ? h('nav', { class: 'pager', 'aria-label': t('todayTitle') },
          h('button', { type: 'button', id: 'entries-previous', disabled: page === 0, onclick: () => { page -= 1; render(); } }, t('previousPage')),
          h('span', {}, `${t('pageOf', { page: page + 1 })} / ${pages}`),
          h('button', { type: 'button', id: 'entries-next', disabled: page >= pages - 1, onclick: () => { page += 1; render(); } }, t('nextPage')))
      : null;
    replace(body,
      h('table', { id: 'entries-table' },
        h('caption', { class: 'visually-hidden' }, t('todayTitle')),
        h('thead', {}, h('tr', {}, ...['time', 'kind', 'amount', 'description', 'category', 'actions']
          .map((k) => h('th', { scope: 'col', class: k === 'amount' ? 'number' : null }, t(k))))),
        h('tbody', {}, rows)),
      nav);
  };

  return {
    element: h('div', {}, status, body, dialog),
    /** Shows `entries` (the whole day, in recording order). */
    update(entries) {
      // Redrawn only when something changed, keeping the focus on the same entry's button.
      const signature = JSON.stringify(entries.map((e) => [e.id, e.reverses_entry_id]));
      if (signature === shown) return;
      shown = signature;
      items = entries;
      const focused = document.activeElement?.closest?.('#today-entries [data-entry]')?.dataset.entry;
      render();
      if (focused) body.querySelector(`button[data-entry="${CSS.escape(focused)}"]`)?.focus();
    },
  };
}
