/**
 * Files the dashboard serves: its own page templates and browser code (this folder), and the
 * chart and socket.io client libraries straight from node_modules, so the page needs no CDN and
 * works on an air-gapped hospital network.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PatchFedError } from '../../shared/errors.ts';

const here = dirname(fileURLToPath(import.meta.url));
/** Browser JS and CSS; everything in it is public (code only, no data). */
export const PUBLIC_DIR = join(here, 'public');
const PAGES_DIR = join(here, 'pages');

const require = createRequire(import.meta.url);

/** URL name under /assets/vendor/ → package and file inside it. */
const VENDOR_FILES: Record<string, { pkg: string; file: string }> = {
  'uPlot.iife.min.js': { pkg: 'uplot', file: 'dist/uPlot.iife.min.js' },
  'uPlot.min.css': { pkg: 'uplot', file: 'dist/uPlot.min.css' },
  'socket.io.min.js': { pkg: 'socket.io-client', file: 'dist/socket.io.min.js' },
};

/** Absolute paths of the vendor files; throws at mount time, not on the first page view. */
export function resolveVendorFiles(): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, { pkg, file }] of Object.entries(VENDOR_FILES)) {
    let pkgDir: string;
    try {
      pkgDir = dirname(require.resolve(`${pkg}/package.json`));
    } catch (e) {
      throw new PatchFedError('dashboard-asset-missing', `dashboard needs the npm package ${pkg} (not installed; run npm install)`, {
        subject: pkg,
        cause: e,
      });
    }
    const path = join(pkgDir, file);
    if (!existsSync(path)) {
      throw new PatchFedError('dashboard-asset-missing', `dashboard asset ${file} is missing from the npm package ${pkg}`, { subject: path });
    }
    out.set(name, path);
  }
  return out;
}

export function readPage(name: 'index.html' | 'login.html'): string {
  return readFileSync(join(PAGES_DIR, name), 'utf8');
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
