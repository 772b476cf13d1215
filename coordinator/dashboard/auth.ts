/**
 * Dashboard access: one shared token (the coordinator config's dashboardToken). A browser proves
 * it once (login form or `?token=` link) and then carries a session cookie; scripts may send
 * `Authorization: Bearer <token>`. The cookie holds an HMAC of the token, not the token itself,
 * so a leaked cookie does not reveal the token and changing the token ends every session.
 * Every comparison hashes both sides first, so timing reveals neither content nor length.
 * Placeholder and guessable tokens are refused (shared/config/dashboard-token.ts).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { assessDashboardToken } from '../../shared/config/dashboard-token.ts';
import { PatchFedError } from '../../shared/errors.ts';

export const SESSION_COOKIE = 'patchfed_dashboard';
/** Seven days: a projector left on the dashboard should not be logged out overnight. */
export const SESSION_MAX_AGE_SECONDS = 7 * 24 * 3600;

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Constant-time string equality (independent of where the strings differ and of their lengths). */
export function constantTimeEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

export class DashboardAuth {
  readonly #token: string;
  readonly #session: string;

  constructor(token: string) {
    const verdict = typeof token === 'string' ? assessDashboardToken(token) : { ok: false as const, reason: 'is missing' };
    if (!verdict.ok) {
      throw new PatchFedError('dashboard-token-weak', `The dashboard token (config field dashboardToken) ${verdict.reason}.`, { subject: 'dashboardToken' });
    }
    this.#token = token;
    this.#session = createHmac('sha256', token).update('patchfed dashboard session v1').digest('base64url');
  }

  tokenMatches(candidate: unknown): boolean {
    return typeof candidate === 'string' && constantTimeEqual(candidate, this.#token);
  }

  /** Value of the session cookie set after a successful login. */
  sessionValue(): string {
    return this.#session;
  }

  sessionCookie(secure: boolean): string {
    const parts = [
      `${SESSION_COOKIE}=${this.#session}`,
      'Path=/',
      'HttpOnly',
      'SameSite=Strict',
      `Max-Age=${SESSION_MAX_AGE_SECONDS}`,
    ];
    if (secure) parts.push('Secure');
    return parts.join('; ');
  }

  static clearedCookie(): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
  }

  /** The token these headers try (a Bearer header), if any: a login attempt when it is wrong. */
  static bearerAttempt(headers: IncomingHttpHeaders): string | undefined {
    return bearerToken(headers.authorization);
  }

  /** True when the headers carry a valid session cookie or a valid bearer token. */
  headersAuthorised(headers: IncomingHttpHeaders): boolean {
    const cookie = parseCookies(headers.cookie)[SESSION_COOKIE];
    if (cookie !== undefined && constantTimeEqual(cookie, this.#session)) return true;
    const bearer = bearerToken(headers.authorization);
    return bearer !== undefined && this.tokenMatches(bearer);
  }
}

/** Minimal RFC 6265 cookie-header parser; the first occurrence of a name wins. */
export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    if (name && !(name in out)) out[name] = value;
  }
  return out;
}

function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : undefined;
}

/**
 * A browser's cross-site WebSocket still carries an Origin header; refuse any whose host differs
 * from the Host it connected to (defence in depth on top of SameSite=Strict). Non-browser clients
 * send no Origin and must authenticate with the token anyway.
 */
export function originMatchesHost(headers: IncomingHttpHeaders): boolean {
  const origin = headers.origin;
  if (origin === undefined) return true;
  const host = headers.host;
  if (!host) return false;
  try {
    return new URL(origin).host.toLowerCase() === host.toLowerCase();
  } catch {
    return false;
  }
}
