/**
 * The dashboard page in a real browser (Debian's /usr/bin/chromium through playwright-core).
 * Skips only when chromium is missing outside CI; under CI a missing browser fails the run.
 */
import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { makeRound, makeSnapshot, siteId, startDashboardServer, TEST_TOKEN, XSS_REASON, type TestServer } from './dashboard-fixtures.ts';
import type { DashboardSnapshot } from '../coordinator/dashboard/types.ts';
import { launchChromium, skipBrowserSuite } from './browser-fixtures.ts';

const skip = skipBrowserSuite('dashboard page tests');

const OUT = 'test-output';

const launch = launchChromium;

/** Everything the page did wrong: script errors, CSP violations, requests leaving the coordinator. */
function watch(page: Page, origin: string): string[] {
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(origin) && !url.startsWith('data:')) problems.push(`external request: ${url}`);
  });
  return problems;
}

async function openDashboard(page: Page, srv: TestServer): Promise<number> {
  await page.goto(`${srv.url}/?token=${TEST_TOKEN}`);
  await page.waitForSelector('body[data-rendered="true"]');
  return page.evaluate(() => performance.getEntriesByName('dashboard-rendered')[0]?.startTime ?? -1);
}

async function tableCells(page: Page, selector: string): Promise<string[][]> {
  return page.$$eval(`${selector} tbody tr`, (rows) => rows.map((r) => Array.from(r.children, (c) => (c.textContent ?? '').trim())));
}

describe.skipIf(skip)('dashboard page (chromium)', () => {
  let browser: Browser;
  beforeAll(async () => {
    mkdirSync(OUT, { recursive: true });
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('without the token shows only the login form and gets no data', async () => {
    const snap = makeSnapshot({ sites: 2, rounds: 3 });
    const srv = await startDashboardServer(snap);
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const res = await page.goto(`${srv.url}/`);
      expect(res?.status()).toBe(401);
      expect(await page.locator('input[name="token"]').count()).toBe(1);
      expect(await page.content()).not.toContain('site-01');
      // The page's own script, run without a session, is refused by the API and the socket.
      const outcome = await page.evaluate(async () => {
        const api = await fetch('/api/snapshot');
        await new Promise((resolve, reject) => {
          const s = document.createElement('script');
          s.src = '/assets/vendor/socket.io.min.js';
          s.onload = resolve;
          s.onerror = reject;
          document.head.append(s);
        });
        const io = (globalThis as unknown as { io: (ns: string, o: object) => { on(e: string, f: (x?: unknown) => void): void } }).io;
        const socketResult = await new Promise<string>((resolve) => {
          const socket = io('/dashboard', { reconnection: false });
          socket.on('snapshot', () => resolve('snapshot'));
          socket.on('connect_error', (e) => resolve(`refused: ${(e as Error).message}`));
        });
        return { api: api.status, socket: socketResult };
      });
      expect(outcome).toEqual({ api: 401, socket: 'refused: unauthorized' });

      // Logging in through the form opens the dashboard.
      await page.fill('input[name="token"]', TEST_TOKEN);
      await Promise.all([page.waitForURL(`${srv.url}/`), page.click('button[type="submit"]')]);
      await page.waitForSelector('body[data-rendered="true"]');
      expect(await page.locator('#sites-table tbody tr').count()).toBe(2);
    } finally {
      await context.close();
      await srv.close();
    }
  });

  it('with ?token= renders sites, charts with the snapshot values, and live pushes', async () => {
    const snap = makeSnapshot({ sites: 3, rounds: 6 });
    const srv = await startDashboardServer(snap, { minPushIntervalMs: 0 });
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    try {
      const page = await context.newPage();
      const problems = watch(page, srv.url);
      const renderedMs = await openDashboard(page, srv);
      console.log(`dashboard (3 sites, 6 rounds) rendered ${renderedMs.toFixed(0)} ms after navigation start`);

      // The token is gone from the URL and lives in an HttpOnly SameSite=Strict cookie.
      expect(page.url()).toBe(`${srv.url}/`);
      const cookies = await context.cookies();
      expect(cookies).toHaveLength(1);
      expect(cookies[0]).toMatchObject({ name: 'patchfed_dashboard', httpOnly: true, sameSite: 'Strict' });
      expect(cookies[0]!.value).not.toContain(TEST_TOKEN);

      // Sites table
      const rows = await tableCells(page, '#sites-table');
      expect(rows.map((r) => r[0])).toEqual(['site-01', 'site-02', 'site-03']);
      expect(rows.map((r) => r[1])).toEqual(snap.sites.map((s) => (s.online ? 'online' : 'offline')));
      expect(rows[0]![5]).toBe('96×96×32');
      expect(rows[1]![5]).toBe('64×64×32');
      expect(rows[0]![3]).toBe('GPU · webgl');
      expect(rows[1]![8]).toContain('rejected (round 6)');
      // The hostile rejection reason is shown as text, never parsed as HTML.
      expect(rows[1]![8]).toContain(XSS_REASON);
      expect(await page.locator('#sites-table img').count()).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
      const labels = snap.experiment.labels;
      expect(rows[2]!.slice(9)).toEqual(labels.map((l) => (snap.sites[2]!.dice![l] as number).toFixed(3)));

      // Dice chart: one point per completed round, the snapshot's values.
      await expectDiceChart(page, snap);
      // Per-site Dice for the selected label (columns: round, sites..., mean).
      const siteTable = await tableCells(page, 'table[data-chart="dice-site"]');
      expect(siteTable).toHaveLength(6);
      expect(siteTable[2]![1]).toBe((snap.rounds[2]!.siteDice['site-01']![labels[0]!] as number).toFixed(3));
      expect(siteTable[2]![4]).toBe((snap.rounds[2]!.globalDice[labels[0]!] as number).toFixed(3));
      await page.selectOption('#dice-site-label', labels[2]!);
      const siteTable2 = await tableCells(page, 'table[data-chart="dice-site"]');
      expect(siteTable2[4]![2]).toBe((snap.rounds[4]!.siteDice['site-02']![labels[2]!] as number).toFixed(3));

      // Current round and checkpoints
      expect(await page.locator('#current-round tbody tr').count()).toBe(3);
      // A site fetching the checkpoint shows 'downloading' with no steps done and its bytes on the checkpoint bar.
      const round = await tableCells(page, '#current-round table');
      expect(round.map((r) => r[1])).toEqual(['downloading', 'evaluating', 'training']);
      expect(round[0]![2]).toBe('0 / 20');
      expect(round[0]![4]).toBe('—');
      const downloading = page.locator('#current-round tr[data-state="downloading"] [role="progressbar"]');
      expect(await downloading.evaluateAll((bars) => bars.map((b) => [b.getAttribute('aria-label'), b.getAttribute('aria-valuenow')]))).toEqual([
        ['site-01 steps', '0'],
        ['site-01 checkpoint download', '25'],
        ['site-01 update upload', '0'],
      ]);
      expect(round[2]![2]).toBe('9 / 20');
      expect(await page.locator('#deadline-left').textContent()).toMatch(/^\d+:\d\d left$/);
      expect(await page.locator('#checkpoints-table a[href="/api/checkpoints/6/download"]').count()).toBe(1);
      await expectConnection(page);

      // Live: a rejection pushed after load appears in the event log.
      srv.handle.publishEvent({ time: new Date().toISOString(), kind: 'rejected', site: 'site-03', message: 'update of round 7 rejected: contains NaN' });
      await page.waitForSelector('#event-log li[data-kind="rejected"]');
      expect(await page.locator('#event-log li').first().textContent()).toContain('update of round 7 rejected: contains NaN');

      // Live: a new completed round pushed via publishSnapshot appears in the charts.
      const ids = [siteId(0), siteId(1), siteId(2)];
      const next: DashboardSnapshot = { ...snap, rounds: [...snap.rounds, makeRound(7, ids, labels, () => 0.9)] };
      srv.setSnapshot(next);
      srv.handle.publishSnapshot();
      await page.waitForSelector('#chart-dice-mean[data-points="7"]');
      await expectDiceChart(page, next);
      // The live event survives the snapshot that did not contain it.
      expect(await page.locator('#event-log li[data-kind="rejected"]').count()).toBe(1);

      await page.screenshot({ path: `${OUT}/dashboard-small.png`, fullPage: true });
      expect(problems).toEqual([]);
    } finally {
      await context.close();
      await srv.close();
    }
  });

  it('renders all rows and points of a 32-site, 100-round experiment', async () => {
    const snap = makeSnapshot({ sites: 32, rounds: 100 });
    const srv = await startDashboardServer(snap);
    const context = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
    try {
      const page = await context.newPage();
      const problems = watch(page, srv.url);
      let snapshotBytes = 0;
      page.on('response', async (r) => {
        if (r.url().endsWith('/api/snapshot')) snapshotBytes = (await r.body()).length;
      });
      const renderedMs = await openDashboard(page, srv);
      console.log(`dashboard (32 sites, 100 rounds) rendered ${renderedMs.toFixed(0)} ms after navigation start; snapshot ${(snapshotBytes / 1024).toFixed(0)} KiB`);
      expect(snapshotBytes).toBeGreaterThan(0);
      expect(snapshotBytes).toBeLessThan(400 * 1024);

      expect(await page.locator('#sites-table tbody tr').count()).toBe(32);
      expect(await page.locator('#current-round tbody tr').count()).toBe(32);
      await expectDiceChart(page, snap);
      for (const chart of ['dice-site', 'loss', 'duration', 'bytes']) {
        expect(await page.locator(`#chart-${chart}`).getAttribute('data-points'), chart).toBe('100');
        expect(await page.locator(`table[data-chart="${chart}"] tbody tr`).count(), chart).toBe(100);
      }
      // mean + 32 sites; 32 loss series
      expect(await page.locator('#chart-dice-site').getAttribute('data-series')).toBe('33');
      expect(await page.locator('#chart-loss').getAttribute('data-series')).toBe('32');
      const loss = await tableCells(page, 'table[data-chart="loss"]');
      expect(loss[99]![32]).toBe((snap.rounds[99]!.siteLoss['site-32'] as number).toPrecision(4));
      await expectConnection(page);

      await page.screenshot({ path: `${OUT}/dashboard-32-sites-1920.png`, fullPage: true });
      await page.setViewportSize({ width: 1280, height: 800 });
      await page.screenshot({ path: `${OUT}/dashboard-32-sites-1280.png` });
      expect(problems).toEqual([]);
    } finally {
      await context.close();
      await srv.close();
    }
  });
});

async function expectDiceChart(page: Page, snap: DashboardSnapshot): Promise<void> {
  const n = snap.rounds.length;
  expect(await page.locator('#chart-dice-mean').getAttribute('data-points')).toBe(String(n));
  // The uPlot instance drew the same number of points it was given.
  expect(await page.locator('#chart-dice-mean canvas').count()).toBe(1);
  const cells = await tableCells(page, 'table[data-chart="dice-mean"]');
  const expected = snap.rounds.map((r) => [String(r.round), ...snap.experiment.labels.map((l) => (r.globalDice[l] as number).toFixed(3))]);
  expect(cells).toEqual(expected);
}

async function expectConnection(page: Page): Promise<void> {
  await page.waitForSelector('#connection[data-state="live"]');
}
