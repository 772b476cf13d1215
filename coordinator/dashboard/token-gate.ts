/**
 * Every dashboard token attempt (login form, `?token=` link, Bearer header, socket handshake)
 * goes through one gate: the per-address LoginThrottle first (a throttled address is refused
 * without checking), then the constant-time comparison, and failures logged one line per address
 * at first, then one summary per interval.
 */
import type { Request } from 'express';
import { clientKey } from '../server/connection-gate.ts';
import { RepeatDigest, describeDetails } from '../server/repeat-digest.ts';
import { DashboardAuth } from './auth.ts';
import { LoginThrottle } from './login-throttle.ts';
import type { MountDashboardOptions } from './types.ts';

export type TokenVerdict = { ok: true } | { ok: false; retryAfter: number };

export type DashboardLog = NonNullable<MountDashboardOptions['log']>;

const DEFAULT_LOG_SUMMARY_INTERVAL_MS = 60_000;

export class TokenGate {
  private readonly throttle: LoginThrottle;
  private readonly failures: RepeatDigest;

  constructor(
    readonly auth: DashboardAuth,
    private readonly log: DashboardLog,
    opts: Pick<MountDashboardOptions, 'loginThrottle' | 'logSummaryIntervalMs'>,
  ) {
    this.throttle = new LoginThrottle(opts.loginThrottle);
    this.failures = new RepeatDigest(opts.logSummaryIntervalMs ?? DEFAULT_LOG_SUMMARY_INTERVAL_MS, (s) =>
      log('warn', `dashboard: ${s.count} more ${s.key === 'throttled' ? 'token attempts refused by the throttle' : 'failed logins'} in the last ${Math.round(s.intervalMs / 1000)} s (${describeDetails(s)})`, {
        event: `dashboard-login-${s.key}`,
        count: s.count,
      }),
    );
  }

  /** One token attempt by `client` through `via`: throttled, compared, counted and logged. */
  tryToken(client: string, candidate: unknown, via: string): TokenVerdict {
    const wait = this.throttle.retryAfterSeconds(client);
    if (wait > 0) {
      if (this.failures.note('throttled', client)) this.log('warn', `dashboard: refused a token attempt from ${client} (${via}) without checking it: too many failed logins; it may try again in ${wait} s`, { event: 'dashboard-login-throttled', client });
      return { ok: false, retryAfter: wait };
    }
    if (this.auth.tokenMatches(candidate)) {
      this.throttle.succeeded(client);
      return { ok: true };
    }
    this.throttle.failed(client);
    if (this.failures.note('failed', client)) this.log('warn', `dashboard: failed login from ${client} (${via}: wrong token)`, { event: 'dashboard-login-failed', client });
    return { ok: false, retryAfter: 0 };
  }

  /** A request's credentials: a valid session cookie, else a Bearer header (a token attempt); null without either. */
  authorise(req: Request): TokenVerdict | null {
    const bearer = DashboardAuth.bearerAttempt(req.headers);
    if (bearer === undefined) return this.auth.headersAuthorised(req.headers) ? { ok: true } : null;
    if (this.auth.headersAuthorised({ cookie: req.headers.cookie })) return { ok: true };
    return this.tryToken(requestClient(req), bearer, 'Bearer header');
  }

  close(): void {
    this.failures.close();
  }
}

export function requestClient(req: Request): string {
  return clientKey(req.socket.remoteAddress);
}

export function throttledMessage(retryAfterSeconds: number): string {
  return `Too many failed logins from your address; try again in ${retryAfterSeconds} s.`;
}
