/**
 * Failed dashboard logins, per client address: a token bucket of `burst` failures refilled at
 * `refillPerMinute`. An address whose bucket is empty is refused (429) before its token is even
 * compared, until the bucket refills; a successful login forgets the address. Every token
 * attempt counts — the login form, a `?token=` link, a Bearer header, the live socket's
 * handshake — but a stale session cookie does not (a browser reloading after a token change is
 * not guessing). With a 128-bit token guessing is hopeless anyway; the throttle keeps a
 * guesser from filling logs and CPU, and the log lines are summarised per interval.
 */
export interface LoginThrottleOptions {
  /** Failures an address may have in a row before it is throttled. */
  burst: number;
  /** Failures forgiven per minute (the rate a throttled address gets attempts back). */
  refillPerMinute: number;
  /** Addresses tracked at most; beyond it the ones with the fullest buckets are forgotten. */
  maxTrackedAddresses: number;
}

export const DEFAULT_LOGIN_THROTTLE: LoginThrottleOptions = { burst: 10, refillPerMinute: 6, maxTrackedAddresses: 10_000 };

interface Bucket {
  tokens: number;
  at: number;
}

export class LoginThrottle {
  private readonly buckets = new Map<string, Bucket>();
  private readonly options: LoginThrottleOptions;

  constructor(
    options: Partial<LoginThrottleOptions> = {},
    private readonly now: () => number = Date.now,
  ) {
    this.options = { ...DEFAULT_LOGIN_THROTTLE, ...options };
  }

  /** 0 when `client` may try a token now; else the seconds until it may. */
  retryAfterSeconds(client: string): number {
    const b = this.refilled(client);
    if (!b || b.tokens >= 1) return 0;
    const perMs = this.options.refillPerMinute / 60_000;
    return Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000));
  }

  /** Counts a failed attempt by `client`. */
  failed(client: string): void {
    const b = this.refilled(client) ?? { tokens: this.options.burst, at: this.now() };
    b.tokens = Math.max(0, b.tokens - 1);
    this.buckets.delete(client); // re-insert: Map order = least recently failed first
    this.buckets.set(client, b);
    if (this.buckets.size > this.options.maxTrackedAddresses) this.forgetSome();
  }

  /** A successful login: the address starts afresh. */
  succeeded(client: string): void {
    this.buckets.delete(client);
  }

  get trackedAddresses(): number {
    return this.buckets.size;
  }

  private refilled(client: string): Bucket | undefined {
    const b = this.buckets.get(client);
    if (!b) return undefined;
    const t = this.now();
    b.tokens = Math.min(this.options.burst, b.tokens + ((t - b.at) * this.options.refillPerMinute) / 60_000);
    b.at = t;
    return b;
  }

  /** Drops the least recently failing tenth (their buckets are the fullest). */
  private forgetSome(): void {
    let drop = Math.ceil(this.options.maxTrackedAddresses / 10);
    for (const key of this.buckets.keys()) {
      if (drop-- <= 0) break;
      this.buckets.delete(key);
    }
  }
}
