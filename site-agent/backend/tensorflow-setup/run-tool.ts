/**
 * Running the external tools the setup needs (python/pip, strip, node-pre-gyp) and finding them
 * on PATH, with their output captured so a failure can be reported as one line.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

export interface ToolResult {
  status: number | null;
  stdout: string;
  stderr: string;
  /** Set when the tool could not be started at all (ENOENT, …). */
  spawnError: string | null;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export type ToolRunner = (command: string, args: readonly string[], options?: RunOptions) => ToolResult;

export const runTool: ToolRunner = (command, args, options = {}) => {
  const r = spawnSync(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 30 * 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', spawnError: r.error ? r.error.message : null };
};

/** The absolute path of an executable found on PATH, or null. */
export function findOnPath(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  if (name.includes('/')) return isExecutable(name) ? path.resolve(name) : null;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The line of a failed tool's output that says why: the last line starting with "ERROR" or
 * "error" (pip, gcc, make), else the last non-empty line.
 */
export function failureLine(result: ToolResult): string {
  if (result.spawnError) return result.spawnError;
  const lines = `${result.stdout}\n${result.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const marked = lines.filter((l) => /^(error|fatal error)\b|: (fatal )?error:|^gyp ERR!/i.test(l) && !/^gyp ERR! (stack|System|command|cwd|node -v|node-gyp -v|not ok)/.test(l));
  return (marked.at(-1) ?? lines.at(-1) ?? `exit status ${result.status}`).slice(0, 400);
}
