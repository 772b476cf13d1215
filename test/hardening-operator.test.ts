/**
 * Issue 11, item 12: operators are told what went wrong.
 *  (a) A site that cannot connect logs, at warn level, what failed and why — refused, HTTP 404,
 *      an http:// URL against HTTPS, an https:// URL against plain HTTP, TLS verification —
 *      with the time of the next try (real sockets, the real client).
 *  (b) A refusal no retry can fix (a site that is not enrolled) stops `patchfed site` with exit
 *      status 3 and one line saying why, instead of retrying forever.
 *  (c) A site whose memory budget fits nothing (`simulate --budgets 10`) declines the round with
 *      the planner's reason: an event at the coordinator, and the round does not wait for its
 *      10-minute deadline.
 *  (d) Console output is one human-readable line per entry (also with `logFile`, which gets JSON
 *      lines); the coordinator prints no JSON and no tfjs banner unless asked (--log-format json).
 * The CLI's own conventions (one-line errors, --version, help markers, option aliases) are in
 * hardening-cli.test.ts.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startCoordinator, type CoordinatorEvents, type RunningCoordinator } from '../coordinator/index.ts';
import { generateKeyPairs, writeKeyFiles } from '../shared/crypto/keys.ts';
import { CoordinatorClient } from '../site-agent/daemon/client.ts';
import { generatePhantomDataset } from '../site-agent/phantom/index.ts';
import {
  freePort,
  jsonLine,
  makeFederation,
  spawnCli,
  testLog,
  tinyLiverExperiment,
  waitForEvent,
  writeSiteConfig,
  type CliProcess,
  type Federation,
} from './federation-fixtures.ts';
import { TEST_TLS_CERT, TEST_TLS_KEY } from './tls-fixture.ts';

let fed: Federation | null = null;
let coordinator: RunningCoordinator | null = null;
const servers: Server[] = [];
const processes: CliProcess[] = [];

afterEach(async () => {
  for (const p of processes.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
  }
  await coordinator?.stop();
  coordinator = null;
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  fed?.cleanup();
  fed = null;
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as AddressInfo).port;
}

/** The first warn line a real client logs when it connects to `url` (then it is stopped). */
async function firstWarning(url: string): Promise<string> {
  const keys = generateKeyPairs();
  const lines: string[] = [];
  let seen!: (line: string) => void;
  const warned = new Promise<string>((r) => (seen = r));
  const client = new CoordinatorClient({
    url,
    siteId: 'site-a',
    keys,
    coordinatorPublicKey: generateKeyPairs(),
    backoff: { initialMs: 200, maxMs: 400 },
    log: (level, msg) => {
      lines.push(`${level} ${msg}`);
      if (level === 'warn') seen(msg);
    },
  });
  client.start();
  const timeout = new Promise<string>((_, reject) => setTimeout(() => reject(new Error(`no warning for ${url}; lines: ${lines.join(' | ')}`)), 20_000));
  try {
    return await Promise.race([warned, timeout]);
  } finally {
    await client.stop();
  }
}

describe('connection failures are explained (12a)', () => {
  it('names refused, HTTP 404, http-vs-https in both directions and TLS verification, with the next retry time', async () => {
    const closed = await freePort();
    const notFound = await listen(createHttpServer((_req, res) => res.writeHead(404).end('not here')));
    const tls = await listen(createHttpsServer({ cert: TEST_TLS_CERT, key: TEST_TLS_KEY }, (_req, res) => res.writeHead(404).end()));
    const retry = /retrying in \d+ s \(at \d\d:\d\d:\d\d UTC\)$/;

    const refused = await firstWarning(`http://127.0.0.1:${closed}`);
    expect(refused).toMatch(/cannot reach the coordinator at http:\/\/127\.0\.0\.1:\d+: connection refused .*is the coordinator running/);
    expect(refused).toMatch(retry);

    const http404 = await firstWarning(`http://127.0.0.1:${notFound}`);
    expect(http404).toMatch(/HTTP 404: something answers there, but not a PatchFed coordinator/);
    expect(http404).toMatch(retry);

    const plainToTls = await firstWarning(`http://127.0.0.1:${tls}`);
    expect(plainToTls).toMatch(/does the coordinator serve HTTPS\? try an https:\/\/ URL/);

    const tlsToPlain = await firstWarning(`https://127.0.0.1:${notFound}`);
    expect(tlsToPlain).toMatch(/TLS handshake failed .*try an http:\/\/ URL/);

    const untrusted = await firstWarning(`https://127.0.0.1:${tls}`);
    expect(untrusted).toMatch(/TLS certificate verification failed \(DEPTH_ZERO_SELF_SIGNED_CERT: .*set federation\.caCertificate/);
    expect(untrusted).toMatch(retry);
  }, 60_000);
});

describe('patchfed site as a process (12b, 12c, 12d)', () => {
  it('exits 3 with one line when not enrolled; with a budget that fits nothing it declines the round and the coordinator records why', async () => {
    const port = await freePort();
    // site-a is enrolled; site-z has keys but is not in the coordinator's config.
    fed = makeFederation({ port, sites: ['site-a'], experiment: tinyLiverExperiment({ rounds: 1, minSites: 1, maxRoundAttempts: 1, roundDeadlineSeconds: 600 }) });
    writeKeyFiles(join(fed.dir, 'site-z'), generateKeyPairs());
    coordinator = await startCoordinator(fed.config, { baseDir: fed.dir, log: testLog() });
    const url = `http://127.0.0.1:${port}`;
    const data = await generatePhantomDataset({ task: 'liver', cases: 3, testCases: 0, shape: [24, 24, 16], seed: 3, siteStyle: 0, out: join(fed.dir, 'data') });
    // 1 MB: the planner finds no patch (what `simulate --budgets 10` does to the cpu-small model).
    const tooSmall = writeSiteConfig(fed, 'site-a', url, { dataset: data.dir, memoryBudgetMB: 1, backend: 'auto', logFile: 'site-a-logs/site.log' });
    const stranger = writeSiteConfig(fed, 'site-z', url, { dataset: data.dir, memoryBudgetMB: 64, backend: 'auto' });

    const declined = waitForEvent<CoordinatorEvents['round-declined']>(coordinator.events, 'round-declined', () => true, 90_000);
    const siteA = spawnCli(['site', '--config', tooSmall], 'site-a');
    const siteZ = spawnCli(['site', '--config', stranger, '--log-level', 'warn'], 'site-z');
    processes.push(siteA, siteZ);

    // (b) not enrolled: exit 3, one line on stderr saying why.
    const exitZ = await siteZ.exited;
    expect(exitZ.code).toBe(3);
    const refusal = siteZ.lines.filter((l) => l.startsWith('patchfed site:'));
    expect(refusal).toHaveLength(1);
    expect(refusal[0]).toMatch(/refuses this site for good \(unknown-site\): .*'site-z' is not enrolled/);
    // --log-level warn: no info lines on the terminal.
    expect(siteZ.lines.some((l) => / INFO  /.test(l))).toBe(false);

    // (c) the round is declined with the planner's reason, and does not wait for the deadline.
    const d = await declined;
    expect(d).toMatchObject({ siteId: 'site-a', round: 1, attempt: 1, code: 'budget-too-small' });
    expect(d.message).toMatch(/cannot take part in round 1 .*1\.00 MB|cannot take part in round 1 .*budget/);
    const end = await coordinator.finished;
    expect(end).toMatchObject({ kind: 'stopped', round: 1 });
    expect(coordinator.db.listRounds('fed-test')[1]?.failureReason).toMatch(/0 accepted update\(s\), 1 needed \(0 rejected, 1 declined, 0 missing\)/);

    // (d) the terminal gets human-readable lines even though logFile is set; the file gets JSON lines.
    await siteA.waitForLine(/told the coordinator this site cannot take part in round 1/);
    siteA.child.kill('SIGTERM');
    expect((await siteA.exited).code).toBe(0);
    const human = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO |WARN |ERROR) site-a: /;
    // The TensorFlow C library (when `patchfed setup tensorflow` installed it) writes its own
    // start-up notices straight to stderr; everything PatchFed prints follows the one format.
    const tensorflowNative = /^(WARNING: All log messages before absl|[IWE]\d{4} [\d:. ]+\d+ \S+\.cc:\d+\])/;
    const logged = siteA.lines.filter((l) => l.trim() !== '' && !tensorflowNative.test(l));
    expect(logged.length).toBeGreaterThan(3);
    for (const line of logged) expect(line, line).toMatch(human);
    const file = readFileSync(join(fed.dir, 'site-a-logs', 'site.log'), 'utf8').trim().split('\n');
    for (const line of file) expect(jsonLine(line), line).not.toBeNull();
    expect(file.map((l) => jsonLine(l)?.msg).some((m) => typeof m === 'string' && /cannot take part in round 1/.test(m))).toBe(true);
  }, 150_000);
});

describe('patchfed coordinator console (12d)', () => {
  it('prints human-readable lines (JSON only with --log-format json or in --log-file), and no tfjs banner', async () => {
    const port = await freePort();
    fed = makeFederation({ port, sites: ['site-a'], experiment: { minSites: 1 } });
    const logFile = join(fed.dir, 'coord-logs', 'coordinator.log');
    const human = spawnCli(['coordinator', '--config', fed.configPath, '--log-file', logFile], 'coordinator');
    processes.push(human);
    await human.waitForLine(/dashboard: http/); // printed once its signal handlers are in place
    human.child.kill('SIGTERM');
    expect((await human.exited).code).toBe(0);
    expect(human.lines.some((l) => l.startsWith('{'))).toBe(false);
    expect(human.lines.some((l) => /TensorFlow|tfjs|Hi there/i.test(l))).toBe(false);
    for (const line of human.lines.filter((l) => l.trim() !== '')) expect(line, line).toMatch(/^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO |WARN |ERROR) coordinator: |patchfed coordinator|  experiment ')/);
    const file = readFileSync(logFile, 'utf8').trim().split('\n');
    expect(file.length).toBeGreaterThan(1);
    for (const line of file) expect(jsonLine(line), line).not.toBeNull();

    const json = spawnCli(['coordinator', '--config', fed.configPath, '--log-format', 'json'], 'coordinator-json');
    processes.push(json);
    await json.waitForLine((l) => jsonLine(l)?.msg === 'waiting for sites');
    await json.waitForLine(/dashboard: http/);
    json.child.kill('SIGTERM');
    expect((await json.exited).code).toBe(0);
  }, 60_000);
});
