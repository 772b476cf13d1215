/**
 * Writes a dashboard token into a coordinator config file in place: only the value of
 * "dashboardToken" changes (the rest of the file, its layout and comments-free JSON stay as
 * they are), through a temp file and a rename, with mode 0600 because the file now holds a secret.
 */
import { chmodSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { PatchFedError } from '../shared/errors.ts';

const TOKEN_FIELD = /("dashboardToken"\s*:\s*)"(?:[^"\\]|\\.)*"/;

export function writeDashboardToken(configPath: string, token: string): void {
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (e) {
    throw new PatchFedError('E_CONFIG', `cannot read coordinator config ${configPath}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { subject: configPath });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new PatchFedError('E_CONFIG', `coordinator config ${configPath} is not valid JSON: ${(e as Error).message}`, { subject: configPath });
  }
  if (typeof parsed !== 'object' || parsed === null || !('dashboardToken' in parsed)) {
    throw new PatchFedError('E_CONFIG', `coordinator config ${configPath} has no "dashboardToken" field to set; add "dashboardToken": "" at the top level first`, { subject: configPath });
  }
  if (!TOKEN_FIELD.test(text)) {
    throw new PatchFedError('E_CONFIG', `coordinator config ${configPath}: its "dashboardToken" is not a string; set it to "" first`, { subject: configPath });
  }
  const updated = text.replace(TOKEN_FIELD, (_m, prefix: string) => `${prefix}${JSON.stringify(token)}`);
  const check = JSON.parse(updated) as { dashboardToken?: unknown };
  if (check.dashboardToken !== token) {
    throw new PatchFedError('E_CONFIG', `coordinator config ${configPath}: could not set "dashboardToken" unambiguously (is it there twice?)`, { subject: configPath });
  }
  const mode = statSync(configPath).mode & 0o777 & ~0o077; // never wider than before, never group/world
  const temp = `${configPath}.tmp-${process.pid}`;
  try {
    writeFileSync(temp, updated, { mode: mode || 0o600 });
    chmodSync(temp, mode || 0o600);
    renameSync(temp, configPath);
  } catch (e) {
    rmSync(temp, { force: true });
    throw new PatchFedError('E_CONFIG', `cannot write coordinator config ${configPath}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { subject: configPath });
  }
}
