/**
 * Headless Debian chromium for the dashboard's browser tests (playwright-core drives the binary
 * from Debian's `chromium` package; never a browser download). Without the binary the tests are
 * skipped locally and fail under CI, where .ci/run installs it.
 */
import { existsSync } from 'node:fs';
import type { Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);

/** True when `suite` must be skipped (no chromium, not CI); says so once. */
export function skipBrowserSuite(suite: string): boolean {
  const skip = !haveChromium && !process.env.CI;
  if (skip) console.warn(`${suite} skipped: ${CHROMIUM} not found (apt-get install chromium); under CI they fail instead`);
  return skip;
}

export async function launchChromium(): Promise<Browser> {
  if (!haveChromium) throw new Error(`${CHROMIUM} is missing: install the Debian package "chromium"`);
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'],
  });
}
