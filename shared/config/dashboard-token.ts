/**
 * The dashboard token: what a strong one is, and how to make one.
 *
 * A token must carry at least DASHBOARD_TOKEN_MIN_BITS bits of randomness. Nobody can measure
 * the randomness of a given string, so `assessDashboardToken` estimates it conservatively from
 * its structure: each character is worth log2 of the alphabet it visibly comes from (16 for
 * hex, 64 for base64url, …), except that runs a guesser tries first are worth what guessing
 * them costs — a word or capitalised word (≈13 bits per word, a diceware list), a repeat of an
 * earlier part (8 bits), an arithmetic run such as `aaaa`, `1234` or `fedc` (one character plus
 * 4 bits). For a random token the estimate is its real entropy (`openssl rand -hex 16` → 128,
 * 32 random bytes in base64url → 258); `aaaaaaaaaaaaaaaa` is worth 9 bits and
 * `test-dashboard-token-0123456789` 67. The example config's placeholder is refused by name.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { randomBytes } from 'node:crypto';

export const DASHBOARD_TOKEN_MIN_BITS = 128;
export const DASHBOARD_TOKEN_MAX_LENGTH = 512;
/** What configs/coordinator.json ships with: obviously not a token, refused with directions. */
export const DASHBOARD_TOKEN_PLACEHOLDER = 'REPLACE-ME-with-the-output-of-patchfed-token';
/** How to get a good token, for every refusal message. */
export const DASHBOARD_TOKEN_ADVICE = 'run `patchfed token` (or `patchfed token --config <coordinator.json>` to write it into the config), or use `openssl rand -base64 32`';

const PLACEHOLDER_MARKERS = /replace|change[-_ .]?me|placeholder|example|your[-_ .]?token|paste|generate/i;
const WORD_BITS = 17; // one word of a 100,000-word list
const REPEAT_BITS = 8;
const RUN_EXTRA_BITS = 4;

export type TokenAssessment = { ok: true; bits: number } | { ok: false; bits: number; reason: string };

/** A fresh token: 32 random bytes, base64url (43 characters, ~256 bits). */
export function generateDashboardToken(): string {
  for (;;) {
    const token = randomBytes(32).toString('base64url');
    // A random token can (with negligible probability) contain a placeholder marker; draw again.
    if (assessDashboardToken(token).ok) return token;
  }
}

/** Refuses placeholders, non-printable or spaced tokens and ones below DASHBOARD_TOKEN_MIN_BITS. */
export function assessDashboardToken(token: string): TokenAssessment {
  if (token.length === 0) return { ok: false, bits: 0, reason: `is empty: ${DASHBOARD_TOKEN_ADVICE}` };
  if (token.length > DASHBOARD_TOKEN_MAX_LENGTH) return { ok: false, bits: 0, reason: `is longer than ${DASHBOARD_TOKEN_MAX_LENGTH} characters` };
  if (!/^[\x21-\x7e]+$/.test(token)) return { ok: false, bits: 0, reason: 'must be printable ASCII without spaces (it travels in URLs, cookies and Authorization headers)' };
  const bits = estimateTokenBits(token);
  if (PLACEHOLDER_MARKERS.test(token)) {
    return { ok: false, bits, reason: `is a placeholder, not a token: ${DASHBOARD_TOKEN_ADVICE}` };
  }
  if (bits < DASHBOARD_TOKEN_MIN_BITS) {
    return { ok: false, bits, reason: `is too easy to guess (about ${Math.floor(bits)} bits of randomness; at least ${DASHBOARD_TOKEN_MIN_BITS} are required): ${DASHBOARD_TOKEN_ADVICE}` };
  }
  return { ok: true, bits };
}

/**
 * The conservative estimate described above, in bits: the cheapest way to spell the token out
 * of single characters, words, repeats and runs (dynamic programming over positions).
 */
export function estimateTokenBits(token: string): number {
  const n = token.length;
  const alphabet = alphabetSize(token);
  const perChar = Math.log2(alphabet.size);
  const repeats = longestEarlierRepeats(token);
  // cheapest[i]: bits to spell token[i..]; filled from the end.
  const cheapest = new Float64Array(n + 1);
  for (let i = n - 1; i >= 0; i--) {
    let best = perChar + cheapest[i + 1]!;
    const word = alphabet.hex ? 0 : wordLength(token, i);
    for (let len = 4; len <= word; len++) best = Math.min(best, WORD_BITS * Math.ceil(len / 8) + cheapest[i + len]!);
    for (let len = 3; len <= repeats[i]!; len++) best = Math.min(best, REPEAT_BITS + cheapest[i + len]!);
    const run = arithmeticRunLength(token, i);
    for (let len = 3; len <= run; len++) best = Math.min(best, perChar + RUN_EXTRA_BITS + cheapest[i + len]!);
    cheapest[i] = best;
  }
  return cheapest[0]!;
}

/** Letters from `i` that read as a word or words: lower case or Capitalised. */
function wordLength(token: string, i: number): number {
  return /^[A-Z]?[a-z]+/.exec(token.slice(i, i + 64))?.[0].length ?? 0;
}

/** For each position, the longest substring starting there that also starts at an earlier position. */
function longestEarlierRepeats(token: string): Int32Array {
  const n = token.length;
  const out = new Int32Array(n);
  // common[j]: length of the common prefix of token[i..] and token[j..] for the current i (j < i).
  let next = new Int32Array(n + 1);
  for (let i = n - 1; i >= 1; i--) {
    const common = new Int32Array(n + 1);
    for (let j = i - 1; j >= 0; j--) {
      common[j] = token[i] === token[j] ? (i + 1 < n ? next[j + 1]! : 0) + 1 : 0;
      if (common[j]! > out[i]!) out[i] = common[j]!;
    }
    next = common;
  }
  return out;
}

/** Digits; hex when every letter is a-f (one case); else the character classes used, symbols by count. */
function alphabetSize(token: string): { size: number; hex: boolean } {
  const symbols = new Set(token.replace(/[A-Za-z0-9]/g, '')).size;
  if (!/[A-Za-z]/.test(token)) return { size: Math.max(2, (/[0-9]/.test(token) ? 10 : 0) + symbols), hex: false };
  if (/^[0-9a-f\W_]*$/.test(token) || /^[0-9A-F\W_]*$/.test(token)) return { size: 16 + symbols, hex: true };
  return { size: (/[0-9]/.test(token) ? 10 : 0) + (/[a-z]/.test(token) ? 26 : 0) + (/[A-Z]/.test(token) ? 26 : 0) + symbols, hex: false };
}

/** Length of a run with a constant small step from `i` (aaaa, 1234, fedc), 0 if shorter than 3. */
function arithmeticRunLength(token: string, i: number): number {
  if (i + 2 >= token.length) return 0;
  const step = token.charCodeAt(i + 1) - token.charCodeAt(i);
  if (Math.abs(step) > 2) return 0;
  let end = i + 1;
  while (end + 1 < token.length && token.charCodeAt(end + 1) - token.charCodeAt(end) === step) end++;
  const length = end - i + 1;
  return length >= 3 ? length : 0;
}
