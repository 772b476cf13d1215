/**
 * Start-up warnings about how the coordinator is exposed: listening beyond loopback without TLS
 * sends the dashboard token and cookie in clear text to anyone on the path (the federation's
 * updates stay end-to-end encrypted and signed, but the dashboard does not).
 */
import { isIP } from 'node:net';

/** True for addresses only this machine can reach: 127/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return mapped !== null && mapped[1]!.startsWith('127.');
}

/** The warnings for listening on `host` with or without TLS (empty when there is nothing to say). */
export function exposureWarnings(host: string, tls: boolean): string[] {
  if (tls || isLoopbackHost(host)) return [];
  const where = host === '0.0.0.0' || host === '::' || host === '' ? 'every network interface' : `${host}, which is not a loopback address,`;
  return [
    `SECURITY WARNING: the coordinator listens on ${where} WITHOUT TLS: the dashboard token, its session cookie and every dashboard page cross the network in clear text. ` +
      `Set "tls" (certificate and key) in the coordinator config, or listen on 127.0.0.1 behind a TLS-terminating proxy. Site updates stay end-to-end encrypted and signed either way.`,
  ];
}
