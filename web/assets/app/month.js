// The month: its totals, the chart, the same figures as a table, and the report as CSV.

import { reportCsv } from './api.js';
import { monthChart } from './chart.js';
import { h, replace } from './dom.js';
import { date, month as monthName, money, t } from './i18n.js';
import { fromMinor, toMinor } from './money.js';

/** Whether this page load drew its first chart with data yet. */
let chartMarked = false;

/** First and last day of `month` (YYYY-MM), the last one no later than `today`. */
export function monthRange(month, today) {
  const [y, m] = month.split('-').map(Number);
  const last = new Date(Date.UTC(y, m, 0)).toISOString().slice(0, 10);
  return { from: `${month}-01`, to: last < today ? last : today };
}

export function monthView({ merchant, month, today, currency, onMonth }) {
  const currentMonth = today.slice(0, 7);
  const shift = (delta) => {
    const [y, m] = month.split('-').map(Number);
    return new Date(Date.UTC(y, m - 1 + delta, 1)).toISOString().slice(0, 7);
  };
  const picker = h('input', { type: 'month', id: 'month-picker', value: month, max: currentMonth });
  picker.addEventListener('change', () => picker.value && onMonth(picker.value));
  const previous = h('button', { type: 'button', id: 'previous-month', onclick: () => onMonth(shift(-1)) }, `‹ ${t('previousMonth')}`);
  const next = h('button', { type: 'button', id: 'next-month', disabled: month >= currentMonth, onclick: () => onMonth(shift(1)) }, `${t('nextMonth')} ›`);
  const totals = h('dl', { id: 'month-totals', class: 'totals' });
  const figure = h('figure', { id: 'month-figure', class: 'figure' });
  const table = h('div', { id: 'month-table-wrap', class: 'table-wrap' });
  const download = h('button', { type: 'button', id: 'download-csv' }, t('downloadCsv'));
  const downloadStatus = h('p', { class: 'status', role: 'status' });
  download.addEventListener('click', async () => {
    const { from, to } = monthRange(month, today);
    try {
      const csv = await reportCsv(merchant, from, to);
      const link = h('a', {
        href: URL.createObjectURL(new Blob([csv], { type: 'text/csv' })),
        download: `cashflow-${merchant}-${month}.csv`,
      });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (error) {
      downloadStatus.textContent = t('error', { reason: error.message });
    }
  });
  const element = h('div', {},
    h('div', { class: 'month-nav' }, previous,
      h('span', { class: 'picker' }, h('label', { for: 'month-picker' }, t('month')), picker), next),
    totals, figure, table,
    h('div', { class: 'actions' }, download), downloadStatus);

  return {
    element,
    /** Shows the report (or null when there is none yet). */
    update(report) {
      if (!report || report.days.length === 0) {
        replace(totals);
        replace(figure, h('p', { id: 'no-report' }, t('noReport')));
        replace(table);
        return;
      }
      const days = report.days;
      const sum = (key) => fromMinor(days.reduce((total, d) => total + toMinor(d[key]), 0n));
      const item = (id, label, amount) => h('div', {},
        h('dt', {}, label),
        h('dd', { id, 'data-amount': amount, class: 'number' }, money(amount, report.currency)));
      replace(totals,
        item('month-credits', t('credits'), sum('credits')),
        item('month-debits', t('debits'), sum('debits')),
        item('month-net', t('net'), sum('net')),
        item('opening-balance', t('opening'), days[0].opening_balance),
        item('closing-balance', t('closing'), days[days.length - 1].closing_balance));
      const label = monthName(month);
      const [y, m] = month.split('-').map(Number);
      const daysInMonth = new Date(Date.UTC(y, m, 0)).getUTCDate();
      replace(figure, monthChart(days, { currency: report.currency, monthLabel: label, today, daysInMonth }));
      const cell = (amount) => h('td', { class: 'number' }, money(amount, report.currency));
      replace(table, h('table', { id: 'month-table' },
        h('caption', {}, t('tableCaption', { month: label })),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, t('day')),
          ...['credits', 'debits', 'net', 'closing'].map((k) => h('th', { scope: 'col', class: 'number' }, t(k))),
          h('th', { scope: 'col', class: 'number' }, t('entries')))),
        h('tbody', {}, days.map((d) => h('tr', { 'data-date': d.date, class: d.date === today ? 'today' : null },
          h('th', { scope: 'row' }, date(d.date)),
          cell(d.credits), cell(d.debits), cell(d.net), cell(d.closing_balance),
          h('td', { class: 'number' }, String(d.entry_count)))))));
      if (!chartMarked) {
        chartMarked = true;
        // The figure docs/figures.md reports: navigation to the first chart with data.
        performance.mark('chart-drawn');
      }
    },
  };
}
