/**
 * Dashboard access hardening (issue 11, item 9):
 *  - placeholder and guessable tokens are refused by the config schema, the coordinator and the
 *    dashboard, with the way to make a good one; `patchfed token` makes good ones;
 *  - 3000 login guesses from one address: 10 are checked, the rest get 429 before the token is
 *    even compared (the right token too, until the bucket refills), another address is not
 *    affected, and the log gets a handful of lines, not 3000;
 *  - HSTS under TLS only; a loud warning when listening beyond loopback without TLS;
 *  - `patchfed simulate` writes its token-bearing coordinator.json with mode 0600.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, createServer as createHttpServer, request as httpRequest, type Server as HttpServer } from 'node:http';
import { Agent as HttpsAgent, createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { Server as SocketIoServer } from 'socket.io';
import { io as connect } from 'socket.io-client';
import { afterEach, describe, expect, it } from 'vitest';
import { LoginThrottle } from '../coordinator/dashboard/login-throttle.ts';
import { mountDashboard } from '../coordinator/dashboard/mount.ts';
import type { DashboardHandle } from '../coordinator/dashboard/types.ts';
import { startCoordinator, type RunningCoordinator } from '../coordinator/index.ts';
import { exposureWarnings, isLoopbackHost } from '../coordinator/server/exposure.ts';
import { createRunDir } from '../cli/simulate/run-dir.ts';
import { SIMULATE_DEFAULTS } from '../cli/simulate/options.ts';
import { CoordinatorConfigSchema } from '../shared/config/coordinator.ts';
import { DASHBOARD_TOKEN_PLACEHOLDER, assessDashboardToken, generateDashboardToken } from '../shared/config/dashboard-token.ts';
import { fakeInitialWeights, makeFederation, spawnCli, type Federation } from './federation-fixtures.ts';
import { makeSnapshot } from './dashboard-fixtures.ts';

const TOKEN = generateDashboardToken();
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface LogLine {
  level: string;
  msg: string;
}

/** The dashboard alone on an HTTP(S) server, logging into `lines`. */
async function dashboardServer(
  options: { tls?: { cert: string; key: string }; lines?: LogLine[]; summaryMs?: number; refillPerMinute?: number } = {},
): Promise<{ url: string; handle: DashboardHandle }> {
  const app = express();
  const server: HttpServer = options.tls ? createHttpsServer(options.tls, app) : createHttpServer(app);
  const io = new SocketIoServer(server, { transports: ['websocket'] });
  const handle = mountDashboard(app, io, {
    token: TOKEN,
    snapshot: () => makeSnapshot({ sites: 2, rounds: 1, events: 1 }),
    downloadCheckpoint: () => null,
    log: (level, msg) => options.lines?.push({ level, msg }),
    logSummaryIntervalMs: options.summaryMs,
    loginThrottle: options.refillPerMinute !== undefined ? { refillPerMinute: options.refillPerMinute } : undefined,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    handle.close();
    await new Promise<void>((resolve) => io.close(() => resolve()));
  });
  return { url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`, handle };
}

/** One HTTP request from a chosen source address (fetch cannot choose it). */
function send(
  url: string,
  init: { method?: string; body?: string; headers?: Record<string, string>; localAddress?: string; agent?: HttpAgent | HttpsAgent },
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(url);
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      u,
      {
        method: init.method ?? 'GET',
        headers: { ...(init.body !== undefined ? { 'content-type': 'application/x-www-form-urlencoded' } : {}), ...init.headers },
        localAddress: init.localAddress,
        agent: init.agent,
        rejectUnauthorized: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

describe('dashboard tokens', () => {
  it('refuses the example placeholder and guessable tokens, saying how to make one; accepts what `patchfed token` makes', async () => {
    const base = makeFederation({ sites: ['site-a'], experiment: { rounds: 1, minSites: 1 } });
    cleanups.push(() => base.cleanup());
    const raw = JSON.parse(readFileSync(base.configPath, 'utf8')) as Record<string, unknown>;
    for (const bad of [DASHBOARD_TOKEN_PLACEHOLDER, 'aaaaaaaaaaaaaaaa', 'test-dashboard-token-0123456789', 'hospital2024!Dashboard', 'REPLACE-with-a-long-random-token-e.g.-openssl-rand-base64-24']) {
      const r = CoordinatorConfigSchema.safeParse({ ...raw, dashboardToken: bad });
      expect(r.success, bad).toBe(false);
      expect(r.error?.issues[0]?.message, bad).toMatch(/patchfed token/);
    }
    expect(assessDashboardToken('aaaaaaaaaaaaaaaa')).toMatchObject({ ok: false, reason: expect.stringMatching(/too easy to guess \(about \d+ bits/) });
    expect(assessDashboardToken(DASHBOARD_TOKEN_PLACEHOLDER)).toMatchObject({ ok: false, reason: expect.stringMatching(/placeholder/) });
    // The coordinator refuses to start with one (before it touches its state directory).
    await expect(startCoordinator({ ...raw, dashboardToken: 'aaaaaaaaaaaaaaaa' }, { baseDir: base.dir, initialWeights: () => fakeInitialWeights() })).rejects.toThrow(
      /dashboardToken: is too easy to guess.*patchfed token/,
    );

    // `patchfed token` prints a token the coordinator accepts; with --config it writes it in place, mode 0600.
    const printed = spawnCli(['token'], 'token');
    expect(await printed.exited).toMatchObject({ code: 0 });
    const token = printed.lines[0]!;
    expect(assessDashboardToken(token)).toMatchObject({ ok: true });
    expect(assessDashboardToken(token).bits).toBeGreaterThanOrEqual(128);
    writeFileSync(base.configPath, JSON.stringify({ ...raw, dashboardToken: DASHBOARD_TOKEN_PLACEHOLDER }, null, 2), { mode: 0o644 });
    const written = spawnCli(['token', '--config', base.configPath], 'token --config');
    expect(await written.exited).toMatchObject({ code: 0 });
    const after = JSON.parse(readFileSync(base.configPath, 'utf8')) as { dashboardToken: string };
    expect(after.dashboardToken).not.toBe(DASHBOARD_TOKEN_PLACEHOLDER);
    expect(CoordinatorConfigSchema.safeParse(after).success).toBe(true);
    expect(statSync(base.configPath).mode & 0o777).toBe(0o600);
  });

  it('`patchfed simulate` writes a strong token into a coordinator.json only its owner can read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'patchfed-simdir-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const layout = await createRunDir({ ...SIMULATE_DEFAULTS, sites: 1, cases: 2, shape: [8, 8, 8], port: 1, runDir: join(dir, 'run') });
    expect(statSync(layout.coordinatorConfigPath).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(layout.coordinatorConfigPath, 'utf8')).dashboardToken).toBe(layout.token);
    expect(assessDashboardToken(layout.token)).toMatchObject({ ok: true });
  });
});

describe('failed logins', () => {
  it('3000 guesses from one address: 10 are checked, the rest throttled (429) and summarised in the log; other addresses are unaffected', { timeout: 120_000 }, async () => {
    const lines: LogLine[] = [];
    // The default burst (10); a refill too slow to matter during the test (the refill is tested below, on a clock).
    const srv = await dashboardServer({ lines, refillPerMinute: 1e-6 });
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
    cleanups.push(() => agent.destroy());
    const statuses = new Map<number, number>();
    let retryAfter: string | undefined;
    for (let batch = 0; batch < 3000 / 50; batch++) {
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => send(`${srv.url}/login`, { method: 'POST', body: `token=guess-${batch}-${i}-${'x'.repeat(30)}`, agent })),
      );
      for (const r of results) {
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 429) retryAfter = String(r.headers['retry-after']);
      }
    }
    expect(Object.fromEntries(statuses)).toEqual({ 401: 10, 429: 2990 });
    expect(Number(retryAfter)).toBeGreaterThan(0);
    // Throttled means the token is not even compared: the right one is refused too, whatever the route.
    expect((await send(`${srv.url}/login`, { method: 'POST', body: `token=${TOKEN}`, agent })).status).toBe(429);
    expect((await send(`${srv.url}/api/snapshot`, { headers: { authorization: `Bearer ${TOKEN}` }, agent })).status).toBe(429);
    expect((await send(`${srv.url}/?token=${TOKEN}`, { agent })).status).toBe(429);
    const socket = connect(`${srv.url}/dashboard`, { transports: ['websocket'], reconnection: false, forceNew: true, auth: { token: TOKEN } });
    cleanups.push(() => void socket.disconnect());
    expect(await new Promise((resolve) => socket.once('connect_error', (e) => resolve(e.message)))).toMatch(/too many failed logins/);
    // A request without credentials is no attempt (the login form is shown) ...
    expect((await send(`${srv.url}/`, { agent })).status).toBe(401);
    // ... and another address logs in at once.
    const other = await send(`${srv.url}/login`, { method: 'POST', body: `token=${TOKEN}`, localAddress: '127.0.0.2' });
    expect(other.status).toBe(303);
    expect(String(other.headers['set-cookie'])).toMatch(/patchfed_dashboard=/);

    srv.handle.close(); // writes the pending summaries now instead of at the end of the minute
    const warnings = lines.filter((l) => l.level === 'warn');
    console.log(`3000 login guesses: ${JSON.stringify(Object.fromEntries(statuses))}; ${warnings.length} log lines:\n  ${warnings.map((l) => l.msg).join('\n  ')}`);
    expect(warnings.some((l) => /failed login from 127\.0\.0\.1 \(login form: wrong token\)/.test(l.msg))).toBe(true);
    expect(warnings.some((l) => /refused a token attempt from 127\.0\.0\.1 .*too many failed logins/.test(l.msg))).toBe(true);
    const summarised = warnings
      .map((l) => /^dashboard: (\d+) more (failed logins|token attempts refused by the throttle)/.exec(l.msg))
      .filter((m): m is RegExpExecArray => m !== null)
      .reduce((n, m) => n + Number(m[1]), 0);
    // First line of each kind + summaries account for every attempt (3000 + the 4 right-token tries while throttled).
    expect(summarised + 2).toBe(3004);
    expect(warnings.length).toBe(4);
  });

  it('a throttled address gets one attempt back per 10 s; success forgets it', () => {
    let now = 0;
    const t = new LoginThrottle({}, () => now);
    for (let i = 0; i < 10; i++) {
      expect(t.retryAfterSeconds('10.0.0.7')).toBe(0);
      t.failed('10.0.0.7');
    }
    expect(t.retryAfterSeconds('10.0.0.7')).toBe(10);
    expect(t.retryAfterSeconds('10.0.0.8')).toBe(0);
    now += 9_000;
    expect(t.retryAfterSeconds('10.0.0.7')).toBe(1);
    now += 1_000;
    expect(t.retryAfterSeconds('10.0.0.7')).toBe(0);
    t.failed('10.0.0.7');
    expect(t.retryAfterSeconds('10.0.0.7')).toBe(10);
    t.succeeded('10.0.0.7');
    expect(t.retryAfterSeconds('10.0.0.7')).toBe(0);
    // Bounded memory: at most maxTrackedAddresses addresses are remembered.
    const small = new LoginThrottle({ maxTrackedAddresses: 100 }, () => now);
    for (let i = 0; i < 1000; i++) small.failed(`10.1.${i >> 8}.${i & 255}`);
    expect(small.trackedAddresses).toBeLessThanOrEqual(100);
  });
});

describe('transport security', () => {
  it('sends HSTS under TLS, and only there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'patchfed-tls-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    const tls = await dashboardServer({ tls: { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') } });
    const plain = await dashboardServer();
    for (const path of ['/login', '/', '/api/snapshot', '/assets/js/main.js']) {
      expect((await send(`${tls.url}${path}`, {})).headers['strict-transport-security'], path).toBe('max-age=31536000');
      expect((await send(`${plain.url}${path}`, {})).headers['strict-transport-security'], path).toBeUndefined();
    }
  });

  it('warns loudly when listening beyond loopback without TLS', async () => {
    expect(isLoopbackHost('127.0.0.1') && isLoopbackHost('::1') && isLoopbackHost('localhost') && isLoopbackHost('127.1.2.3')).toBe(true);
    expect(isLoopbackHost('0.0.0.0') || isLoopbackHost('::') || isLoopbackHost('10.0.0.1')).toBe(false);
    expect(exposureWarnings('127.0.0.1', false)).toEqual([]);
    expect(exposureWarnings('0.0.0.0', true)).toEqual([]);
    expect(exposureWarnings('0.0.0.0', false)[0]).toMatch(/^SECURITY WARNING: .*every network interface WITHOUT TLS/);

    let fed: Federation | null = makeFederation({ sites: ['site-a'], experiment: { rounds: 1, minSites: 1, startupGraceSeconds: 600 } });
    cleanups.push(() => fed?.cleanup());
    const logs: { level: string; msg: string }[] = [];
    let coordinator: RunningCoordinator | null = await startCoordinator(
      { ...fed.config, host: '0.0.0.0' },
      { baseDir: fed.dir, initialWeights: () => fakeInitialWeights(), log: (level, msg) => logs.push({ level, msg }) },
    );
    cleanups.push(() => coordinator?.stop());
    expect(logs.filter((l) => l.level === 'warn' && l.msg.startsWith('SECURITY WARNING'))).toHaveLength(1);
    await coordinator.stop();
    coordinator = null;
    fed.cleanup();
    fed = null;
  });
});
