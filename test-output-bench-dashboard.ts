// Scratch: page-load timing of the dashboard with 32 sites x 100 rounds (not a test).
import { chromium } from 'playwright-core';
import { makeSnapshot, startDashboardServer, TEST_TOKEN } from './test/dashboard-fixtures.ts';

const runs = Number(process.argv[2] ?? 7);
const label = process.argv[3] ?? 'run';
const snap = makeSnapshot({ sites: 32, rounds: 100 });
const srv = await startDashboardServer(snap);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'] });
const rows: Record<string, number>[] = [];
for (let i = 0; i < runs; i++) {
  const ctx = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  const page = await ctx.newPage();
  await page.goto(`${srv.url}/?token=${TEST_TOKEN}`);
  await page.waitForSelector('body[data-rendered="true"]');
  const t = (await page.evaluate(`(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const m = (n) => performance.getEntriesByName(n)[0];
    const res = performance.getEntriesByType('resource');
    const snap = res.find((r) => r.name.endsWith('/api/snapshot'));
    const scripts = res.filter((r) => r.name.includes('/assets/'));
    return {
      rendered: m('dashboard-rendered')?.startTime ?? -1,
      docResponseEnd: nav.responseEnd,
      domContentLoaded: nav.domContentLoadedEventEnd,
      assetsDone: Math.max(...scripts.map((r) => r.responseEnd)),
      snapStart: snap?.startTime ?? -1,
      snapEnd: snap?.responseEnd ?? -1,
      charts: m('render:charts')?.duration ?? -1,
      mainStart: m('snapshot:fetch')?.startTime ?? -1,
      snapParsed: (m('snapshot:fetch')?.startTime ?? 0) + (m('snapshot:fetch')?.duration ?? 0),
      renderStart: m('render:sites')?.startTime ?? -1,
      tables: ['sites', 'round', 'checkpoints', 'events'].reduce((s, n) => s + (m('render:' + n)?.duration ?? 0), 0),
      requests: res.length + 1,
    };
  })()`)) as Record<string, number>;
  rows.push(t);
  await ctx.close();
}
await browser.close();
await srv.close();
const keys = Object.keys(rows[0]!);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(label, keys.map((k) => `${k}=${median(rows.map((r) => r[k]!)).toFixed(0)}`).join(' '), '| rendered all:', rows.map((r) => r.rendered.toFixed(0)).join(','));
process.exit(0);
