/**
 * Builds tfjs-node's native binding from source against the TensorFlow library in its deps/:
 * `node-pre-gyp install --build-from-source` in the package folder (the package's own
 * build-addon-from-source script), which never downloads a prebuilt binary. node-gyp is pointed
 * at this Node's own headers (npm_config_nodedir) so it does not download them either.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PatchFedError } from '../../../shared/errors.ts';
import { writeFileAtomic } from '../../model/atomic-file.ts';
import { bindingPath } from '../tfjs-node-package.ts';
import { failureLine, type ToolRunner } from './run-tool.ts';

/** node-gyp's CLI script: npm's own (npm exports it to scripts), a local one, or the one bundled with npm beside node. */
export function findNodeGyp(env: NodeJS.ProcessEnv = process.env, execPath = process.execPath): string | null {
  const candidates: string[] = [];
  if (env.npm_config_node_gyp) candidates.push(env.npm_config_node_gyp);
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a project dependency
  }
  const prefix = path.resolve(path.dirname(execPath), '..');
  candidates.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(path.join(path.dirname(execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((p) => p.endsWith('.js') && existsSync(p)) ?? null;
}

/** This Node's install prefix when it has the headers node-gyp needs (<prefix>/include/node), else null. */
export function findNodeHeaders(execPath = process.execPath): string | null {
  const prefix = path.resolve(path.dirname(execPath), '..');
  const inc = path.join(prefix, 'include', 'node');
  return existsSync(path.join(inc, 'node_api.h')) && existsSync(path.join(inc, 'common.gypi')) ? prefix : null;
}

export interface BuildResult {
  binding: string;
  ms: number;
  log: string;
  /** Where node-gyp took the Node headers from (null: it may have downloaded them). */
  nodeDir: string | null;
}

export function buildBinding(packageDir: string, logPath: string, run: ToolRunner, env: NodeJS.ProcessEnv = process.env): BuildResult {
  const packageJson = path.join(packageDir, 'package.json');
  let nodePreGyp: string;
  try {
    nodePreGyp = createRequire(packageJson).resolve('@mapbox/node-pre-gyp/bin/node-pre-gyp');
  } catch {
    throw new PatchFedError('tensorflow-setup-build', `setup tensorflow: @mapbox/node-pre-gyp (a dependency of ${packageDir}) is not installed; run 'npm install' first`, { subject: packageDir });
  }
  const nodeGyp = findNodeGyp(env);
  if (nodeGyp === null) {
    throw new PatchFedError('tensorflow-setup-build', 'setup tensorflow: node-gyp not found (it ships with npm); install npm alongside Node', { subject: 'node-gyp' });
  }
  const nodeDir = findNodeHeaders();
  const binding = bindingPath(packageDir);
  // A failed build must not leave the previous binding next to the new libraries.
  rmSync(binding, { force: true });
  rmSync(path.join(packageDir, 'build'), { recursive: true, force: true });
  const buildEnv: NodeJS.ProcessEnv = { ...env, npm_config_node_gyp: nodeGyp, JOBS: env.JOBS ?? 'max' };
  if (nodeDir !== null) buildEnv.npm_config_nodedir = nodeDir;
  const t0 = Date.now();
  const r = run(process.execPath, [nodePreGyp, 'install', '--build-from-source'], { cwd: packageDir, env: buildEnv, timeoutMs: 20 * 60_000 });
  const ms = Date.now() - t0;
  mkdirSync(path.dirname(logPath), { recursive: true });
  writeFileAtomic(logPath, `$ node ${nodePreGyp} install --build-from-source  (in ${packageDir}; nodedir ${nodeDir ?? 'unset'})\n${r.stdout}\n${r.stderr}\nexit status ${r.status}\n`);
  if (r.status !== 0 || !existsSync(binding)) {
    throw new PatchFedError('tensorflow-setup-build', `setup tensorflow: building the ${path.basename(packageDir)} binding failed: ${failureLine(r)} (full log: ${logPath})`, { subject: logPath });
  }
  return { binding, ms, log: logPath, nodeDir };
}
