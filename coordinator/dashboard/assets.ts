/**
 * Files the dashboard serves: its own page templates and browser code (this folder), and the
 * chart and socket.io client libraries straight from node_modules, so the page needs no CDN and
 * works on an air-gapped hospital network.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join, relative, sep } from 'node:path';
import { gzipSync } from 'node:zlib';
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

/** A file the dashboard serves under /assets/, held in memory with its gzip form and validator. */
export interface StaticAsset {
  body: Buffer;
  /** Present when gzip makes the file meaningfully smaller. */
  gzip: Buffer | null;
  contentType: string;
  /** Strong validator (content hash): a reload revalidates with If-None-Match and gets a 304. */
  etag: string;
}

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

function staticAsset(path: string): StaticAsset {
  const body = readFileSync(path);
  const gz = gzipSync(body, { level: 9 });
  return {
    body,
    gzip: gz.length < body.length * 0.9 ? gz : null,
    contentType: CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
  };
}

function publicFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...publicFiles(path));
    else if (entry.isFile() && CONTENT_TYPES[extname(entry.name)]) out.push(path);
  }
  return out;
}

/**
 * Every asset by its URL path under /assets/ ('js/main.js', 'vendor/uPlot.iife.min.js'), read and
 * compressed once at mount: a page load is then ~15 small in-memory responses instead of as many
 * stat + file-stream round trips on a coordinator that is busy aggregating.
 */
export function loadStaticAssets(vendorFiles: Map<string, string> = resolveVendorFiles()): Map<string, StaticAsset> {
  const out = new Map<string, StaticAsset>();
  for (const path of publicFiles(PUBLIC_DIR)) out.set(relative(PUBLIC_DIR, path).split(sep).join('/'), staticAsset(path));
  for (const [name, path] of vendorFiles) out.set(`vendor/${name}`, staticAsset(path));
  return out;
}