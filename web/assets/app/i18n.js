// Languages (pt-BR and en): the messages, and money, dates and times per locale.
// The choice is kept in localStorage (it is no secret) and set on <html lang>.

const MESSAGES = {
  'pt-BR': {
    title: 'Fluxo de caixa',
    skip: 'Ir para o conteúdo',
    footer: 'Lançamentos são aceitos mesmo quando a consolidação está fora; o saldo os alcança depois.',
    language: 'Idioma',
    merchant: 'Comerciante',
    signedInAs: 'Conectado como {user}',
    signIn: 'Entrar',
    signOut: 'Sair',
    signInTitle: 'Entre para ver o seu fluxo de caixa',
    signInText: 'O login é feito no provedor de identidade; esta página nunca vê a sua senha.',
    signedOut: 'Você saiu.',
    sessionEnded: 'A sua sessão terminou. Entre de novo.',
    loginFailed: 'O login falhou: {reason}',
    loading: 'Carregando…',
    forbiddenTitle: '403 — acesso negado',
    forbiddenText: 'Você não pode ver os livros do comerciante {merchant}.',
    forbiddenBack: 'Ver os livros de {merchant}',
    recordTitle: 'Registrar um lançamento',
    kind: 'Tipo',
    credit: 'Crédito',
    debit: 'Débito',
    amount: 'Valor',
    amountHint: 'Por exemplo 1.234,56',
    date: 'Data',
    description: 'Descrição',
    category: 'Categoria',
    optional: '(opcional)',
    record: 'Registrar',
    recording: 'Registrando…',
    recorded: '{kind} de {amount} registrado.',
    notAnswered: 'O razão não respondeu a tempo: o lançamento pode ou não ter sido registrado. Envie de novo: ele não será registrado duas vezes.',
    fixFields: 'Corrija os campos marcados.',
    amountInvalid: 'Informe um valor maior que zero, com até 2 casas decimais.',
    dateInvalid: 'Informe uma data entre {from} e hoje.',
    todayTitle: 'Lançamentos de hoje',
    noEntries: 'Nenhum lançamento hoje.',
    time: 'Hora',
    actions: 'Ações',
    reverse: 'Estornar',
    reversed: 'Estornado',
    reversalOf: 'Estorno',
    previousPage: 'Página anterior',
    nextPage: 'Próxima página',
    pageOf: 'Página {page}',
    confirmReverseTitle: 'Estornar este lançamento?',
    confirmReverse: 'O {kind} de {amount} ({description}) será anulado por um lançamento oposto. Lançamentos nunca são apagados.',
    confirm: 'Estornar',
    cancel: 'Cancelar',
    reverseDone: 'Estorno registrado.',
    monthTitle: 'O mês',
    month: 'Mês',
    previousMonth: 'Mês anterior',
    nextMonth: 'Próximo mês',
    credits: 'Créditos',
    debits: 'Débitos',
    net: 'Líquido',
    opening: 'Saldo de abertura',
    closing: 'Saldo de fechamento',
    entries: 'Lançamentos',
    downloadCsv: 'Baixar CSV',
    chartTitle: 'Créditos, débitos e saldo de fechamento por dia, {month}',
    chartDesc: 'Barras para cima: créditos; para baixo: débitos; linha: saldo de fechamento. Os mesmos números estão na tabela abaixo.',
    tableCaption: 'Dias de {month}',
    day: 'Dia',
    noReport: 'Ainda não há saldo para este mês.',
    pending: { one: '{count} lançamento ainda não está no saldo', other: '{count} lançamentos ainda não estão no saldo' },
    pendingNone: 'Todos os lançamentos de hoje estão no saldo.',
    pendingAtLeast: { one: 'Pelo menos {count} lançamento ainda não está no saldo', other: 'Pelo menos {count} lançamentos ainda não estão no saldo' },
    consolidationDown: 'A consolidação diária está indisponível agora. Os lançamentos continuam sendo aceitos e entram no saldo quando ela voltar.',
    lastRead: 'Saldos lidos pela última vez às {time}.',
    stale: 'Saldo servido do cache, de {asOf}: o banco de dados da consolidação está indisponível.',
    ledgerDown: 'O razão está indisponível agora: não é possível registrar nem listar lançamentos.',
    error: 'Erro: {reason}',
    retryAfter: 'Tente de novo em {seconds} s.',
  },
  en: {
    title: 'Cash flow',
    skip: 'Skip to content',
    footer: 'Entries are accepted even while the consolidation is down; the balance catches up later.',
    language: 'Language',
    merchant: 'Merchant',
    signedInAs: 'Signed in as {user}',
    signIn: 'Sign in',
    signOut: 'Log out',
    signInTitle: 'Sign in to see your cash flow',
    signInText: 'You sign in at the identity provider; this page never sees your password.',
    signedOut: 'You are signed out.',
    sessionEnded: 'Your session ended. Please sign in again.',
    loginFailed: 'Signing in failed: {reason}',
    loading: 'Loading…',
    forbiddenTitle: '403 — access denied',
    forbiddenText: 'You may not see the books of merchant {merchant}.',
    forbiddenBack: 'See the books of {merchant}',
    recordTitle: 'Record an entry',
    kind: 'Kind',
    credit: 'Credit',
    debit: 'Debit',
    amount: 'Amount',
    amountHint: 'For example 1,234.56',
    date: 'Date',
    description: 'Description',
    category: 'Category',
    optional: '(optional)',
    record: 'Record',
    recording: 'Recording…',
    recorded: '{kind} of {amount} recorded.',
    notAnswered: 'The ledger did not answer in time: the entry may or may not be recorded. Send it again: it will not be recorded twice.',
    fixFields: 'Please correct the marked fields.',
    amountInvalid: 'Give an amount above zero, with at most 2 decimals.',
    dateInvalid: 'Give a date between {from} and today.',
    todayTitle: "Today's entries",
    noEntries: 'No entries today.',
    time: 'Time',
    actions: 'Actions',
    reverse: 'Reverse',
    reversed: 'Reversed',
    reversalOf: 'Reversal',
    previousPage: 'Previous page',
    nextPage: 'Next page',
    pageOf: 'Page {page}',
    confirmReverseTitle: 'Reverse this entry?',
    confirmReverse: 'The {kind} of {amount} ({description}) will be cancelled by an opposite entry. Entries are never deleted.',
    confirm: 'Reverse',
    cancel: 'Cancel',
    reverseDone: 'Reversal recorded.',
    monthTitle: 'The month',
    month: 'Month',
    previousMonth: 'Previous month',
    nextMonth: 'Next month',
    credits: 'Credits',
    debits: 'Debits',
    net: 'Net',
    opening: 'Opening balance',
    closing: 'Closing balance',
    entries: 'Entries',
    downloadCsv: 'Download CSV',
    chartTitle: 'Credits, debits and closing balance per day, {month}',
    chartDesc: 'Bars up: credits; bars down: debits; line: closing balance. The same figures are in the table below.',
    tableCaption: 'Days of {month}',
    day: 'Day',
    noReport: 'No balance for this month yet.',
    pending: { one: '{count} entry not in the balance yet', other: '{count} entries not in the balance yet' },
    pendingNone: "All of today's entries are in the balance.",
    pendingAtLeast: { one: 'At least {count} entry not in the balance yet', other: 'At least {count} entries not in the balance yet' },
    consolidationDown: 'The daily consolidation is unavailable right now. Entries are still accepted, and reach the balance when it is back.',
    lastRead: 'Balances last read at {time}.',
    stale: 'Balance served from the cache, as of {asOf}: the consolidation’s database is unavailable.',
    ledgerDown: 'The ledger is unavailable right now: entries can be neither recorded nor listed.',
    error: 'Error: {reason}',
    retryAfter: 'Try again in {seconds} s.',
  },
};

export const LANGUAGES = [
  { code: 'pt-BR', name: 'Português (Brasil)' },
  { code: 'en', name: 'English' },
];

const STORAGE_KEY = 'cashflow.language';
let language = pick();

function pick() {
  const kept = localStorage.getItem(STORAGE_KEY);
  if (kept && MESSAGES[kept]) return kept;
  const preferred = navigator.languages || [navigator.language || 'en'];
  return preferred.some((l) => l.toLowerCase().startsWith('pt')) ? 'pt-BR' : 'en';
}

export function currentLanguage() {
  return language;
}

export function setLanguage(code) {
  if (!MESSAGES[code]) return;
  language = code;
  localStorage.setItem(STORAGE_KEY, code);
  document.documentElement.lang = code;
}

/** The message `key` with `{name}` replaced by `params.name`; plural forms by `params.count`. */
export function t(key, params = {}) {
  let message = MESSAGES[language][key] ?? MESSAGES.en[key] ?? key;
  if (typeof message === 'object') {
    const form = new Intl.PluralRules(language).select(params.count ?? 0);
    message = message[form] ?? message.other;
  }
  return message.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ''));
}

/** Money from a decimal string: R$ 1.234,56 in pt-BR, BRL 1,234.56 in en. */
export function money(amount, currency) {
  const options = { style: 'currency', currency, minimumFractionDigits: 2 };
  if (language === 'en') options.currencyDisplay = 'code';
  // A string keeps every digit (no float on the way).
  return new Intl.NumberFormat(language === 'en' ? 'en-US' : 'pt-BR', options).format(amount);
}

/** A business date (YYYY-MM-DD, no time zone of its own). */
export function date(isoDate, style = 'medium') {
  const [y, m, d] = isoDate.split('-').map(Number);
  return new Intl.DateTimeFormat(language, { dateStyle: style, timeZone: 'UTC' }).format(
    new Date(Date.UTC(y, m - 1, d)),
  );
}

/** The day of the month alone. */
export function dayOfMonth(isoDate) {
  return String(Number(isoDate.slice(8, 10)));
}

/** A month (YYYY-MM), e.g. "novembro de 2026". */
export function month(isoMonth) {
  const [y, m] = isoMonth.split('-').map(Number);
  return new Intl.DateTimeFormat(language, { month: 'long', year: 'numeric', timeZone: 'UTC' }).format(
    new Date(Date.UTC(y, m - 1, 1)),
  );
}

/** An instant (RFC 3339) as a time of day in `timeZone`. */
export function time(instant, timeZone) {
  return new Intl.DateTimeFormat(language, { timeStyle: 'short', timeZone }).format(new Date(instant));
}

/** An instant as date and time in `timeZone`. */
export function dateTime(instant, timeZone) {
  return new Intl.DateTimeFormat(language, { dateStyle: 'short', timeStyle: 'medium', timeZone }).format(
    new Date(instant),
  );
}

/** The decimal separator of the current language. */
export function decimalSeparator() {
  return language === 'en' ? '.' : ',';
}
