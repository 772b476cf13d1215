import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { PatchFedError } from '../errors.ts';

/** "field.sub: reason; other: reason" — one line a user can act on. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 8)
    .map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`)
    .join('; ');
}

/** Validates `value` with `schema`, or throws a PatchFedError naming `what` and every bad field. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: string, code = 'E_CONFIG'): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new PatchFedError(code, `${what} is invalid: ${describeIssues(r.error.issues)}`, { subject: what });
  return r.data;
}

/** Reads a JSON config file and validates it; errors name the file. */
export function loadJsonConfig<S extends z.ZodType>(path: string, schema: S, what = 'config'): z.output<S> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new PatchFedError('E_CONFIG', `cannot read ${what} file ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, { subject: path });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PatchFedError('E_CONFIG', `${what} file ${path} is not valid JSON: ${(e as Error).message}`, { subject: path });
  }
  return parseWith(schema, json, `${what} file ${path}`);
}

/** Paths inside a config are relative to the config file, so a run directory can move. */
export function resolveFrom(configPath: string, p: string): string {
  return isAbsolute(p) ? p : resolve(dirname(configPath), p);
}
