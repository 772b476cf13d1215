/**
 * Regenerates docs/dashboard.png from a live federation:
 *
 *   npm start                      # prints "Dashboard: http://127.0.0.1:PORT/?token=..."
 *   npx tsx docs/screenshot-dashboard.ts 'http://127.0.0.1:PORT/?token=...' docs/dashboard.png 4 10
 *
 * Waits until the history charts have at least that many completed rounds (default 3), then
 * the given seconds more (default 10, so the next round is under way), and takes a full-page screenshot with Debian's chromium (the same browser the tests drive).
 */
import { chromium } from 'playwright-core';

const [url, out = 'docs/dashboard.png', rounds = '3', delaySeconds = '10'] = process.argv.slice(2);
if (!url || !/^https?:\/\/.+[?&]token=/.test(url)) {
  console.error('usage: npx tsx docs/screenshot-dashboard.ts <dashboard URL with ?token=...> [out.png] [rounds]');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  await page.goto(url);
  await page.waitForSelector('body[data-rendered="true"]');
  await page.waitForFunction((n) => Number(document.querySelector('#chart-dice-mean')?.getAttribute('data-points') ?? 0) >= n, Number(rounds), { timeout: 600_000, polling: 500 });
  await page.waitForTimeout(Number(delaySeconds) * 1000); // into the next round: its progress bars move
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
