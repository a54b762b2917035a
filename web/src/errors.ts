/**
 * A refusal or failure of the API as the user reads it, in their language: the server's
 * problem documents are in English for the log and the integrator. By status; a 422 names its
 * missing fields with their labels. A refusal with a stable `code` (src/dicomweb/problem.ts)
 * says why: the code's own text when the portal knows it, else the status's text followed by
 * the server's reason (its `detail`), so that the user is never left with "refused" alone.
 */
import { ApiError } from './api.ts';
import type { Language } from './i18n.ts';

const messages = {
  fr: {
    network: 'Le serveur ne répond pas : vérifiez la connexion puis réessayez.',
    400: 'La demande n\'est pas valide : vérifiez les champs saisis.',
    401: 'La session a pris fin : reconnectez-vous.',
    403: 'Vous n\'avez pas le droit de faire cela.',
    404: 'Introuvable, ou vous n\'y avez pas accès.',
    409: 'Cela a changé entre-temps (déjà fait, ou pris par quelqu\'un d\'autre) : la page montre l\'état actuel.',
    413: 'C\'est trop volumineux pour être envoyé.',
    422: 'Il manque des éléments obligatoires',
    429: 'Trop de demandes à la fois : réessayez dans un instant.',
    server: 'Le serveur a rencontré une erreur : réessayez ; si elle se répète, prévenez l\'administrateur.',
    other: 'La demande a échoué.',
    reason: 'Motif',
  },
  en: {
    network: 'The server does not answer: check the connection and try again.',
    400: 'The request is not valid: check the fields entered.',
    401: 'The session ended: log in again.',
    403: 'You may not do this.',
    404: 'Not found, or you have no access to it.',
    409: 'This changed meanwhile (already done, or taken by someone else): the page shows where it stands now.',
    413: 'This is too large to be sent.',
    422: 'Mandatory items are missing',
    429: 'Too many requests at once: try again in a moment.',
    server: 'The server met an error: try again; if it happens again, tell the administrator.',
    other: 'The request failed.',
    reason: 'Reason',
  },
} as const;

/** The texts of the problem codes the portal knows (the server's codes, src/access/users.ts...). */
const codeTexts: Record<Language, Record<string, string>> = {
  fr: {
    'username-taken': 'Cet identifiant est déjà pris : choisissez-en un autre.',
    'rpps-taken': 'Ce numéro RPPS appartient déjà à un autre utilisateur.',
    'password-too-short': 'Le mot de passe doit compter au moins 12 caractères.',
    'password-too-long': 'Le mot de passe compte au plus 1024 caractères.',
  },
  en: {
    'username-taken': 'This login is taken: choose another one.',
    'rpps-taken': 'This RPPS number already belongs to another user.',
    'password-too-short': 'The password must have at least 12 characters.',
    'password-too-long': 'The password has at most 1024 characters.',
  },
};

/** The user's text for an error thrown by the API helpers (web/src/api.ts); `labels` names fields (a 422's missing ones). */
export function errorText(error: unknown, language: Language, labels: Readonly<Record<string, string>> = {}): string {
  const m = messages[language];
  if (!(error instanceof ApiError)) return m.network;
  if (error.status === 422) {
    const missing = (error.missing ?? []).map((f) => labels[f] ?? f);
    return missing.length > 0 ? `${m[422]}${language === 'fr' ? ' : ' : ': '}${missing.join(', ')}` : m[422];
  }
  if (error.status >= 500) return m.server;
  const known = m[error.status as 400 | 401 | 403 | 404 | 409 | 413 | 429] ?? m.other;
  if (error.code !== undefined) {
    const text = codeTexts[language][error.code];
    if (text !== undefined) return text;
    if (error.message) return `${known} ${m.reason}${language === 'fr' ? ' : ' : ': '}${error.message}`;
  }
  return known;
}
