// Recording an entry. One Idempotency-Key per form fill: made when the data is first sent,
// sent again with the same data when a submit failed without an answer (the ledger then
// replays its first answer instead of recording twice), replaced as soon as the data changes.

import { ApiError, recordEntry } from './api.js';
import { addDays, settings, today } from './config.js';
import { h, replace } from './dom.js';
import { decimalSeparator, money, t } from './i18n.js';
import { parseAmount } from './money.js';

/** Which input shows the error of each API field. */
const FIELD_INPUTS = {
  kind: 'kind-credit',
  amount: 'amount',
  business_date: 'business-date',
  description: 'description',
  category: 'category',
};

export function entryForm({ merchant, onRecorded, onForbidden }) {
  let sent = null; // { body: JSON of the data, key: its Idempotency-Key }
  const errorOf = (id) => h('p', { id: `${id}-error`, class: 'error', hidden: true });
  const field = (id, label, input, { hint, optional } = {}) =>
    h('div', { class: 'field' },
      h('label', { for: id }, label, optional ? h('span', { class: 'optional' }, ` ${t('optional')}`) : null),
      input,
      hint ? h('p', { id: `${id}-hint`, class: 'hint' }, hint) : null,
      errorOf(id));
  const described = (id, hint) => [hint ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(' ');
  const todayDate = today();
  const oldest = addDays(todayDate, -settings().backdate_days);

  const amount = h('input', {
    id: 'amount', name: 'amount', inputmode: 'decimal', autocomplete: 'off', required: true,
    'aria-describedby': described('amount', true),
  });
  const date = h('input', {
    id: 'business-date', name: 'business_date', type: 'date', required: true,
    min: oldest, max: todayDate, value: todayDate, 'aria-describedby': described('business-date'),
  });
  const description = h('input', {
    id: 'description', name: 'description', maxlength: 200, autocomplete: 'off',
    'aria-describedby': described('description'),
  });
  const category = h('input', {
    id: 'category', name: 'category', maxlength: 64, autocomplete: 'off',
    'aria-describedby': described('category'),
  });
  const radio = (kind, checked) =>
    h('span', { class: 'choice' },
      h('input', { type: 'radio', name: 'kind', id: `kind-${kind}`, value: kind, checked }),
      h('label', { for: `kind-${kind}` }, t(kind)));
  const submit = h('button', { type: 'submit', id: 'record-entry', class: 'primary' }, t('record'));
  const status = h('p', { id: 'form-status', class: 'status', role: 'status' });
  const alert = h('p', { id: 'form-alert', class: 'alert', role: 'alert' });

  const form = h('form', { id: 'entry-form', novalidate: true, 'aria-labelledby': 'record-title' },
    h('fieldset', { class: 'kind', 'aria-describedby': 'kind-credit-error' },
      h('legend', {}, t('kind')), radio('credit', true), radio('debit', false), errorOf('kind-credit')),
    field('amount', t('amount'), amount, { hint: t('amountHint') }),
    field('business-date', t('date'), date),
    field('description', t('description'), description, { optional: true }),
    field('category', t('category'), category, { optional: true }),
    h('div', { class: 'actions' }, submit),
    status,
    alert);

  const clearErrors = () => {
    for (const element of form.querySelectorAll('.error')) {
      element.hidden = true;
      element.textContent = '';
    }
    for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
    replace(alert);
  };
  const showErrors = (errors) => {
    let first = null;
    for (const [name, message] of Object.entries(errors)) {
      const id = FIELD_INPUTS[name];
      if (!id) {
        alert.append(h('span', {}, `${name}: ${message} `));
        continue;
      }
      const input = form.querySelector(`#${id}`);
      const error = form.querySelector(`#${id}-error`);
      input.setAttribute('aria-invalid', 'true');
      error.textContent = message;
      error.hidden = false;
      first ??= input;
    }
    if (!alert.textContent) alert.textContent = t('fixFields');
    first?.focus();
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    replace(status);
    const kind = form.querySelector('input[name=kind]:checked').value;
    const value = parseAmount(amount.value, decimalSeparator());
    const errors = {};
    if (!value) errors.amount = t('amountInvalid');
    if (!date.value || date.value < oldest || date.value > today()) {
      errors.business_date = t('dateInvalid', { from: oldest });
    }
    if (Object.keys(errors).length) return showErrors(errors);
    const entry = { kind, amount: value, currency: settings().currency, business_date: date.value };
    if (description.value.trim()) entry.description = description.value.trim();
    if (category.value.trim()) entry.category = category.value.trim();
    const body = JSON.stringify(entry);
    if (sent?.body !== body) sent = { body, key: crypto.randomUUID() };
    submit.disabled = true;
    submit.textContent = t('recording');
    try {
      const answer = await recordEntry(merchant, entry, sent.key);
      sent = null;
      form.reset();
      date.value = today();
      status.textContent = t('recorded', { kind: t(kind), amount: money(answer.body.amount, answer.body.currency) });
      onRecorded(answer.body);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.kind === 'forbidden') return onForbidden();
      if (error.status === 422 || error.status === 400) return showErrors(error.fields);
      if (['timeout', 'network', 'unavailable'].includes(error.kind)) {
        alert.textContent = t('notAnswered') + (error.retryAfter ? ` ${t('retryAfter', { seconds: error.retryAfter })}` : '');
      } else {
        alert.textContent = t('error', { reason: error.message });
      }
    } finally {
      submit.disabled = false;
      submit.textContent = t('record');
    }
  });
  return form;
}
