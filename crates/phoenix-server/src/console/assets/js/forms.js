/*
 * Forms: fields named by their path in the request body, submit handling with a busy button, and the
 * server's validation errors shown under the field they name.
 */
import { cap, el, writeOnly } from './ui.js';

export function field(label, control, hint) {
  control.id = control.id || `f-${String(control.name || label).replace(/[^A-Za-z0-9_-]+/g, '-')}`;
  return el('div', { class: 'field', 'data-for': control.name || '' },
    el('label', { for: control.id, text: label }), control, hint ? el('small', { class: 'hint', text: hint }) : null);
}

export const input = (name, attrs = {}) => el('input', { name, type: 'text', autocomplete: 'off', spellcheck: 'false', ...attrs });
export const select = (name, options, value) => el('select', { name, value }, options.map(([v, label]) => el('option', { value: v, text: label })));

/** A card form with a summary box, the given body, and submit/cancel buttons; hidden until opened. */
export function cardForm({ id, title, submitId, submitLabel, extraHead }, ...body) {
  const form = el('form', { class: 'card form', id, hidden: true, novalidate: true },
    el('div', { class: 'form-title' }, el('h2', { text: title }), extraHead),
    el('div', { class: 'form-summary', role: 'alert', hidden: true }), body,
    el('div', { class: 'form-actions' },
      el('button', { type: 'submit', class: 'btn primary', id: submitId, text: submitLabel }),
      el('button', { type: 'button', class: 'btn ghost', text: 'Cancel', onclick: () => { form.hidden = true; clearErrors(form); } })));
  return form;
}

export function clearErrors(form) {
  form.querySelectorAll('.field-error').forEach((n) => n.remove());
  form.querySelectorAll('.invalid').forEach((n) => { n.classList.remove('invalid'); n.removeAttribute('aria-invalid'); });
  const summary = form.querySelector('.form-summary');
  if (summary) { summary.hidden = true; summary.replaceChildren(); }
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const hasWord = (msg, word) => new RegExp(`(^|[^A-Za-z0-9_.\\]])${escapeRe(word)}($|[^A-Za-z0-9_])`).test(msg);

/** The path a validation message leads with (`config.ranking.size: must be ...`), if any. */
export function messagePath(message) {
  const m = /^([A-Za-z0-9_.[\]]+): /.exec(message || '');
  return m ? m[1] : null;
}

/** The known field a 400 message names: its leading path first, else the longest path or field name it mentions. */
export function matchField(message, paths) {
  const head = messagePath(message);
  let best = null;
  let bestScore = -1;
  for (const p of paths) {
    const short = p.split('.').pop().replace(/\[\d+\]$/, '');
    let score = -1;
    if (head && (head === p || head.startsWith(`${p}.`) || head.startsWith(`${p}[`))) score = 3000 + p.length;
    else if (hasWord(message, p)) score = 2000 + p.length;
    else if (short.length > 2 && hasWord(message, short)) score = 1000 + short.length;
    if (score > bestScore) { best = p; bestScore = score; }
  }
  return best;
}

const fieldNames = (form) => [...new Set([...form.querySelectorAll('[name]')].map((n) => n.name).filter(Boolean))];

function addFieldError(form, path, message) {
  const control = form.querySelector(`[name="${CSS.escape(path)}"]`);
  if (!control) return;
  const host = control.closest('.field') || control.parentElement;
  control.classList.add('invalid');
  control.setAttribute('aria-invalid', 'true');
  const text = messagePath(message) === path ? message.slice(path.length + 2) : message; // the input already names the path
  host.append(el('div', { class: 'field-error', 'data-field': path, text: cap(text) }));
  if (host.closest('[hidden]')) return;
  control.focus({ preventScroll: true });
  host.scrollIntoView({ block: 'center' });
}

export function showSummary(form, title, message) {
  const summary = form.querySelector('.form-summary');
  summary.replaceChildren(el('strong', { text: title }), el('p', { text: message }));
  summary.hidden = false;
}

export function showFormError(form, err, conflictField) {
  const validation = err.status === 400;
  showSummary(form, validation ? 'Please fix the highlighted field.' : 'That did not work.', err.message);
  const conflict = typeof conflictField === 'function' ? conflictField(err.message) : conflictField;
  const path = err.status === 409 && conflict ? conflict : validation ? matchField(err.message, fieldNames(form)) : null;
  if (path) addFieldError(form, path, err.message);
}

/**
 * Wires a form's submit to an async handler, with a busy button and errors shown in place.
 * `conflictField` names the field a 409 is about (or picks it from the message).
 */
export function onSubmit(form, handler, conflictField) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const submit = form.querySelector('[type="submit"]');
    submit.disabled = true;
    try {
      await handler();
    } catch (err) {
      if (err.status !== 401) showFormError(form, err, conflictField);
    } finally {
      submit.disabled = false;
    }
  });
}

/** A whole number as typed, or the text itself so the server names what is wrong with it; blank: left out. */
export function wholeNumber(raw) {
  const text = raw.trim();
  if (text === '') return undefined;
  return /^\d+$/.test(text) ? Number(text) : text;
}

export function toggleForm(form) {
  form.hidden = !form.hidden;
  if (!form.hidden) { form.querySelector('input, select, textarea').focus(); form.scrollIntoView({ block: 'nearest' }); }
}

/**
 * A dialog that asks why before a write that keeps its reason (voiding). `run(reason)` does the write,
 * and the server's errors show in the dialog. Resolves with what `run` answered, or null if cancelled.
 */
export function reasonDialog({ title, body, action, run }) {
  return new Promise((resolve) => {
    let result = null;
    const dlg = el('dialog', { class: 'modal', 'aria-labelledby': 'modal-title' });
    const form = el('form', { novalidate: true },
      el('h2', { id: 'modal-title', text: title }),
      el('p', { text: body }),
      el('div', { class: 'form-summary', role: 'alert', hidden: true }),
      field('Reason', input('reason', { id: 'reason-input', maxlength: 500, placeholder: 'Kept with the record, e.g. "refunded" or "cheating"' })),
      el('div', { class: 'modal-actions' },
        el('button', { type: 'button', class: 'btn secondary', text: 'Cancel', onclick: () => dlg.close() }),
        writeOnly(() => el('button', { type: 'submit', class: 'btn danger', id: 'reason-submit', text: action }))));
    onSubmit(form, async () => {
      result = await run(form.elements.reason.value.trim());
      dlg.close();
    });
    dlg.append(form);
    dlg.addEventListener('close', () => { dlg.remove(); resolve(result); });
    document.body.append(dlg);
    dlg.showModal();
    form.elements.reason.focus();
  });
}
