/**
 * The dashboard of a real, running federation in a real browser: an in-process coordinator, two
 * site daemons (the real `patchfed site` code, in-process, training a tiny U-Net on liver
 * phantoms with different memory budgets) and a third enrolled site whose update is tampered with on the wire.
 * Debian's /usr/bin/chromium through playwright-core; skips only when chromium is missing
 * outside CI.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCoordinator, type RunningCoordinator } from '../coordinator/index.ts';
import { generatePhantomDataset } from '../site-agent/phantom/index.ts';
import { runSiteDaemon } from '../site-agent/daemon/daemon.ts';
import type { Metrics } from '../shared/protocol/messages.ts';
import { makeFederation, startSite, testLog, waitForEvent, type Federation, type TestSite, tinyLiverExperiment } from './federation-fixtures.ts';
import { launchChromium, skipBrowserSuite } from './browser-fixtures.ts';

const skip = skipBrowserSuite('dashboard e2e tests');

const OUT = 'test-output';
const SITES = [
  { id: 'site-a', budgetMB: 64, style: 0 },
  { id: 'site-b', budgetMB: 80, style: 1 },
] as const;
const HOSTILE = 'site-x';
const LABELS = ['liver', 'cancer'];

let fed: Federation;
let coordinator: RunningCoordinator;
let browser: Browser;
const stopDaemons = new AbortController();
let daemons: Promise<unknown>[] = [];
let hostile: TestSite;

const launch = launchChromium;

/** Per completed round, the mean over accepted updates of the Dice each site reported, from the coordinator's DB. */
function recordedGlobalDice(): { round: number; dice: Record<string, number> }[] {
  const out: { round: number; dice: Record<string, number> }[] = [];
  for (const r of coordinator.db.listRounds('dash-e2e')) {
    if (r.status !== 'complete' || r.round === 0) continue;
    const dices = coordinator.db
      .listSiteUpdates(r.id)
      .filter((u) => u.status === 'accepted')
      .map((u) => (u.metrics as { dice: Record<string, number> }).dice);
    out.push({ round: r.round, dice: Object.fromEntries(LABELS.map((l) => [l, dices.reduce((s, d) => s + d[l]!, 0) / dices.length])) });
  }
  return out;
}

async function tableCells(page: Page, selector: string): Promise<string[][]> {
  return page.$$eval(`${selector} tbody tr`, (rows) => rows.map((r) => Array.from(r.children, (c) => (c.textContent ?? '').trim())));
}

describe.skipIf(skip)('dashboard of a running federation (chromium)', () => {
  beforeAll(async () => {
    mkdirSync(OUT, { recursive: true });
    fed = makeFederation({
      sites: [...SITES.map((s) => s.id), HOSTILE],
      experiment: tinyLiverExperiment({ id: 'dash-e2e' }),
    });
    coordinator = await startCoordinator(fed.config, { baseDir: fed.dir, log: testLog() });
    for (const s of SITES) {
      await generatePhantomDataset({ task: 'liver', cases: 4, testCases: 0, shape: [24, 24, 16], seed: 7 + s.style, siteStyle: s.style, out: join(fed.dir, `${s.id}-data`) });
      const configPath = join(fed.dir, `${s.id}.json`);
      writeFileSync(
        configPath,
        JSON.stringify({
          siteId: s.id,
          dataset: `${s.id}-data`,
          memoryBudgetMB: s.budgetMB,
          backend: 'auto',
          cacheMB: 32,
          workDir: `${s.id}-work`,
          logFile: `${s.id}.log`,
          training: { overlap: 0 },
          federation: { coordinatorUrl: coordinator.url, secretKey: `${s.id}.key`, publicKey: `${s.id}.pub`, coordinatorPublicKey: 'coordinator.pub' },
        }),
      );
      daemons.push(runSiteDaemon(configPath, { stopSignal: stopDaemons.signal }));
    }
    // An enrolled site whose update is tampered with on the wire (one flipped ciphertext byte):
    // the coordinator rejects it and the round carries on with the honest sites.
    hostile = startSite(fed, coordinator.url, HOSTILE, {
      samples: 1,
      tamper: (type, args) => {
        const p = args[0] as { index?: number; ciphertext?: Uint8Array };
        if (type !== 'update-chunk' || p.index !== 0 || !p.ciphertext) return args;
        const ciphertext = Uint8Array.from(p.ciphertext);
        ciphertext[10] = ciphertext[10]! ^ 0x01;
        return [{ ...p, ciphertext }, ...args.slice(1)];
      },
      handler: async (task) => {
        const metrics: Metrics = { loss: 1, dice: { liver: 0, cancer: 0 }, timeMs: 1, peakMemoryBytes: 1, backend: 'cpu', patch: [8, 8, 8], batch: 1 };
        return { update: task.global, samples: 1, metrics };
      },
    });
    browser = await launch();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    stopDaemons.abort();
    await hostile?.client.stop();
    await Promise.allSettled(daemons);
    await coordinator?.stop();
    fed?.cleanup();
  });

  it('without the token: 401, the login form, and no data over the API or the socket', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const res = await page.goto(`${coordinator.url}/`);
      expect(res?.status()).toBe(401);
      expect(await page.locator('input[name="token"]').count()).toBe(1);
      const html = await page.content();
      for (const s of SITES) expect(html).not.toContain(s.id);
      const outcome = await page.evaluate(async () => {
        const api = await fetch('/api/snapshot');
        const body = await api.text();
        await new Promise((resolve, reject) => {
          const s = document.createElement('script');
          s.src = '/assets/vendor/socket.io.min.js';
          s.onload = resolve;
          s.onerror = reject;
          document.head.append(s);
        });
        const io = (globalThis as unknown as { io: (ns: string, o: object) => { on(e: string, f: (x?: unknown) => void): void; onAny(f: (e: string) => void): void } }).io;
        const received: string[] = [];
        const socketResult = await new Promise<string>((resolve) => {
          // The coordinator speaks websocket only (connection-gate.ts).
          const socket = io('/dashboard', { reconnection: false, transports: ['websocket'] });
          socket.onAny((e) => received.push(e));
          socket.on('connect_error', (e) => resolve(`refused: ${(e as Error).message}`));
          socket.on('connect', () => resolve('connected'));
        });
        await new Promise((r) => setTimeout(r, 300));
        return { api: api.status, body, socket: socketResult, received };
      });
      expect(outcome.api).toBe(401);
      expect(outcome.body).not.toContain('site-a');
      expect(outcome.socket).toBe('refused: unauthorized');
      expect(outcome.received).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('with the token: both sites online with their planned patches, the Dice chart follows the recorded rounds, the rejected update is in the event log', { timeout: 150_000 }, async () => {
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      page.on('request', (r) => {
        if (!r.url().startsWith(coordinator.url) && !r.url().startsWith('data:')) problems.push(`external request: ${r.url()}`);
      });
      await page.goto(`${coordinator.url}/?token=${fed.config.dashboardToken}`);
      await page.waitForSelector('body[data-rendered="true"]');
      expect(page.url()).toBe(`${coordinator.url}/`);

      // Live: the page was opened before any round finished and follows the pushes.
      if (coordinator.state().lastCompletedRound < 1) await waitForEvent<{ round: number }>(coordinator.events, 'round-complete', (p) => p.round >= 1, 90_000);
      await page.waitForSelector('#chart-dice-mean:is([data-points="1"], [data-points="2"])', { timeout: 30_000 });

      // Sites table: both training sites online, each with the patch it planned for its own budget.
      const rows = new Map((await tableCells(page, '#sites-table')).map((r) => [r[0], r]));
      const patches = SITES.map((s) => coordinator.db.getSite(s.id)!.plannedPatch!);
      expect(patches[0]).not.toEqual(patches[1]); // different budgets, different patches
      SITES.forEach((s, i) => {
        const row = rows.get(s.id)!;
        expect(row, s.id).toBeDefined();
        expect(row[1]).toBe('online');
        expect(row[5]).toBe(patches[i]!.join('×'));
      });
      // The rejection, with its reason, in the site table and in the event log.
      expect(rows.get(HOSTILE)![8]).toContain('rejected');
      await page.waitForSelector(`#event-log li[data-kind="reject"]`);
      const rejectText = await page.locator('#event-log li[data-kind="reject"]').first().textContent();
      expect(rejectText).toContain(HOSTILE);
      expect(rejectText).toContain('rejected');

      // The experiment finishes; the chart has one point per completed round with the recorded values.
      if (!coordinator.state().end) await coordinator.finished;
      await page.waitForSelector('#chart-dice-mean[data-points="2"]', { timeout: 30_000 });
      const recorded = recordedGlobalDice();
      expect(recorded.map((r) => r.round)).toEqual([1, 2]);
      const cells = await tableCells(page, 'table[data-chart="dice-mean"]');
      expect(cells).toEqual(recorded.map((r) => [String(r.round), ...LABELS.map((l) => r.dice[l]!.toFixed(3))]));
      expect(await page.locator('#checkpoints-table a[href="/api/checkpoints/3/download"]').count()).toBe(1);

      await page.screenshot({ path: `${OUT}/dashboard-e2e.png`, fullPage: true });
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
