#!/usr/bin/env node
// Builds the native Conv3D addon (node-gyp rebuild into ./build). Runs from npm's install
// script, so it NEVER fails the install: any problem prints one notice line and exits 0, and
// training falls back to the stock cpu kernels. The full compiler log goes to build/build.log.
//
//   PATCHFED_SKIP_NATIVE=1         skip the build
//   PATCHFED_NATIVE_MARCH=<arch>   -march value (default: native, i.e. this machine's CPU)
//   --strict                        exit 1 on failure (for CI scripts that must prove the build)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const strict = process.argv.includes('--strict');
const addonPath = join(here, 'build', 'Release', 'patchfed_conv3d.node');

function notice(reason) {
  console.log(`PatchFed: native Conv3D kernels not built (${reason}); training will use the slower stock cpu kernels`);
  process.exit(strict ? 1 : 0);
}

/** node-gyp's CLI script: npm's own (npm exports it to install scripts), a local one, or the one bundled with npm. */
function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a project dependency
  }
  if (process.env.npm_execpath) candidates.push(resolve(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const prefix = resolve(dirname(process.execPath), '..');
  candidates.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((p) => p.endsWith('.js') && existsSync(p)) ?? null;
}

/** A local Node headers prefix (<prefix>/include/node/node_api.h), so node-gyp needs no download. */
function findNodeDir() {
  const prefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h')) && existsSync(join(prefix, 'include', 'node', 'common.gypi'))) return prefix;
  return null;
}

if (process.env.PATCHFED_SKIP_NATIVE === '1') notice('PATCHFED_SKIP_NATIVE=1');

const nodeGyp = findNodeGyp();
if (!nodeGyp) notice('node-gyp not found');

const args = [nodeGyp, 'rebuild', `--directory=${here}`, '--jobs=max'];
const nodeDir = findNodeDir();
if (nodeDir) args.push(`--nodedir=${nodeDir}`);

const started = Date.now();
const result = spawnSync(process.execPath, args, { cwd: here, encoding: 'utf8', timeout: 5 * 60_000, env: process.env });
const log = `${result.stdout ?? ''}\n${result.stderr ?? ''}`;
try {
  mkdirSync(join(here, 'build'), { recursive: true });
  writeFileSync(join(here, 'build', 'build.log'), log);
} catch {
  // the log is a convenience
}

if (result.error || result.status !== 0) {
  const firstError =
    log.split('\n').find((line) => /error|not found|No such file/i.test(line) && !/^gyp info/.test(line))?.trim() ??
    (result.error ? String(result.error.message) : `node-gyp exited with ${result.status}`);
  notice(`${firstError.slice(0, 200)}; log: ${join(here, 'build', 'build.log')}`);
}

// Prove the binary loads in this Node (ABI, CPU features) before declaring success.
const check = spawnSync(process.execPath, ['-e', `const a = require(${JSON.stringify(addonPath)}); if (typeof a.conv3dForward !== 'function') process.exit(3);`], {
  encoding: 'utf8',
});
if (check.status !== 0) notice(`built addon does not load: ${(check.stderr || `exit ${check.status}`).split('\n').find((l) => l.trim()) ?? ''}`);

console.log(`PatchFed: native Conv3D kernels built in ${((Date.now() - started) / 1000).toFixed(1)} s (${addonPath})`);
