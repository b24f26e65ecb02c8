// The month as SVG: one bar pair per day (credits up, debits down from the zero line) and the
// closing balance as a line, on one scale. The chart is an image with a name and a description
// for screen readers; the table beside it carries the same figures.

import { s } from './dom.js';
import { dayOfMonth, money, t } from './i18n.js';
import { toMinor } from './money.js';

const WIDTH = 760;
const HEIGHT = 300;
const MARGIN = { top: 16, right: 12, bottom: 30, left: 96 };

/** The chart of `days` (the report's days, from the 1st), on the month's whole width. */
export function monthChart(days, { currency, monthLabel, today, daysInMonth }) {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const values = days.map((day) => ({
    date: day.date,
    credits: Number(toMinor(day.credits)),
    debits: Number(toMinor(day.debits)),
    closing: Number(toMinor(day.closing_balance)),
    raw: day,
  }));
  let top = Math.max(0, ...values.map((v) => Math.max(v.credits, v.closing)));
  let bottom = Math.min(0, ...values.map((v) => Math.min(-v.debits, v.closing)));
  if (top === bottom) [top, bottom] = [100, -100];
  const pad = (top - bottom) * 0.05;
  top += pad;
  bottom -= pad;
  const y = (minor) => MARGIN.top + ((top - minor) / (top - bottom)) * plotHeight;
  const band = plotWidth / Math.max(1, daysInMonth, values.length);
  const barWidth = Math.max(2, band * 0.6);
  const x = (i) => MARGIN.left + band * i + band / 2;

  const title = s('title', { id: 'chart-title' }, t('chartTitle', { month: monthLabel }));
  const desc = s('desc', { id: 'chart-desc' }, t('chartDesc'));
  const svg = s('svg', {
    id: 'month-chart',
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: 'img',
    'aria-labelledby': 'chart-title chart-desc',
    class: 'chart',
  });
  svg.append(title, desc);

  const gridValues = [top - pad, 0, bottom + pad].filter((v, i, all) => all.indexOf(v) === i);
  for (const value of gridValues) {
    const at = y(value);
    svg.append(
      s('line', { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: at, y2: at, class: value === 0 ? 'axis' : 'grid' }),
      s('text', { x: MARGIN.left - 6, y: at + 4, class: 'label', 'text-anchor': 'end' },
        money((value / 100).toFixed(2), currency)),
    );
  }
  values.forEach((v, i) => {
    const isToday = v.date === today;
    const cls = (kind) => `bar ${kind}${isToday ? ' today' : ''}`;
    const credit = s('rect', {
      class: cls('credit'),
      x: x(i) - barWidth / 2,
      y: y(v.credits),
      width: barWidth,
      height: Math.max(0, y(0) - y(v.credits)),
      'data-date': v.date,
      'data-amount': v.raw.credits,
    });
    credit.append(s('title', {}, `${dayOfMonth(v.date)}: ${t('credits')} ${money(v.raw.credits, currency)}`));
    const debit = s('rect', {
      class: cls('debit'),
      x: x(i) - barWidth / 2,
      y: y(0),
      width: barWidth,
      height: Math.max(0, y(-v.debits) - y(0)),
      'data-date': v.date,
      'data-amount': v.raw.debits,
    });
    debit.append(s('title', {}, `${dayOfMonth(v.date)}: ${t('debits')} ${money(v.raw.debits, currency)}`));
    svg.append(credit, debit);
    const day = Number(dayOfMonth(v.date));
    if (day === 1 || day % 5 === 0 || isToday) {
      svg.append(s('text', { x: x(i), y: HEIGHT - 10, class: isToday ? 'label today' : 'label', 'text-anchor': 'middle' },
        dayOfMonth(v.date)));
    }
  });
  if (values.length > 0) {
    const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v.closing).toFixed(1)}`).join(' ');
    svg.append(s('polyline', { points, class: 'closing' }));
    const last = values.length - 1;
    svg.append(s('circle', { cx: x(last), cy: y(values[last].closing), r: 3.5, class: 'closing-point' }));
  }
  return svg;
}
