/**
 * The dashboard's cross-site validation table in a real browser (Debian's /usr/bin/chromium via
 * playwright-core): hidden before the experiment completes; afterwards one row per site and model
 * with Dice / HD95 / NSD per class as the snapshot carries them (∞ for cases where HD95 is
 * infinite), the sites that have not reported named under it, and site ids shown as text.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import type { CrossSiteTable } from '../shared/protocol/cross-site-table.ts';
import { makeSnapshot, startDashboardServer, TEST_TOKEN, XSS_REASON } from './dashboard-fixtures.ts';
import { launchChromium, skipBrowserSuite } from './browser-fixtures.ts';

const skip = skipBrowserSuite('cross-site dashboard tests');

const mean = (m: number | null, n = 2, infinite = 0) => ({ mean: m, n, infinite });

function crossSite(): CrossSiteTable {
  return {
    kind: 'patchfed-cross-site-validation',
    experimentId: 'exp',
    round: 5,
    checkpointVersion: 6,
    checkpointSha256: 'ab'.repeat(32),
    nsdToleranceMm: 1,
    labels: ['liver', 'tumour'],
    enrolledSites: ['site-01', 'site-02', XSS_REASON],
    participants: [],
    rows: [
      { siteId: 'site-01', model: 'global', localRound: null, cases: 2, classes: { liver: { dice: mean(0.91234), hd95: mean(3.25), nsd: mean(0.875) }, tumour: { dice: mean(0.5), hd95: mean(7.5, 2, 1), nsd: mean(0.25) } }, meanDice: 0.70617, reportedAt: '2026-12-03T10:00:00Z' },
      { siteId: 'site-01', model: 'local', localRound: 5, cases: 2, classes: { liver: { dice: mean(0.8), hd95: mean(4), nsd: mean(0.8) }, tumour: { dice: mean(0), hd95: mean(null, 2, 2), nsd: mean(0) } }, meanDice: 0.4, reportedAt: '2026-12-03T10:00:01Z' },
      { siteId: 'site-02', model: 'global', localRound: null, cases: 3, classes: { liver: { dice: mean(0.7, 3), hd95: mean(5, 3), nsd: mean(0.6, 3) }, tumour: { dice: mean(null, 0), hd95: mean(null, 0), nsd: mean(null, 0) } }, meanDice: 0.7, reportedAt: '2026-12-03T10:00:02Z' },
    ],
  };
}

describe.skipIf(skip)('cross-site validation on the dashboard (chromium)', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('is hidden until the experiment completes, then shows a row per site and model with per-class Dice, HD95 and NSD', async () => {
    const before = { ...makeSnapshot({ sites: 2, rounds: 3, labels: ['liver', 'tumour'] }), crossSite: null };
    const srv = await startDashboardServer(before);
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(e.message));
      await page.goto(`${srv.url}/?token=${TEST_TOKEN}`);
      await page.waitForSelector('body[data-rendered="true"]');
      expect(await page.locator('#cross-site-section').isHidden()).toBe(true);

      srv.setSnapshot({ ...before, crossSite: crossSite() });
      srv.handle.publishSnapshot();
      await page.waitForSelector('#cross-site-section:not([hidden]) #cross-site-table tbody tr[data-model]');
      const headers = await page.$$eval('#cross-site-table thead th', (ths) => ths.map((t) => (t.textContent ?? '').trim()));
      expect(headers).toEqual(['Site', 'Model', 'Test cases', 'liver Dice', 'liver HD95 (mm)', 'liver NSD', 'tumour Dice', 'tumour HD95 (mm)', 'tumour NSD', 'Mean Dice']);
      const rows = await page.$$eval('#cross-site-table tbody tr', (trs) => trs.map((r) => Array.from(r.children, (c) => (c.textContent ?? '').trim())));
      expect(rows).toEqual([
        ['site-01', 'global v6', '2', '0.912', '3.3', '0.875', '0.500', '7.5 (∞ 1/2)', '0.250', '0.706'],
        ['site-01', 'local (round 5)', '2', '0.800', '4.0', '0.800', '0.000', '∞', '0.000', '0.400'],
        ['site-02', 'global v6', '3', '0.700', '5.0', '0.600', '—', '—', '—', '0.700'],
      ]);
      const note = (await page.locator('#cross-site-note').textContent()) ?? '';
      expect(note).toContain('round 5, checkpoint v6');
      expect(note).toContain(`Not reported yet: ${XSS_REASON}`); // as text, never markup
      expect(await page.evaluate(() => (globalThis as { __xss?: number }).__xss)).toBeUndefined();
      expect(problems).toEqual([]);
    } finally {
      await context.close();
      await srv.close();
    }
  });
});
