/**
 * The simulation's view of cross-site validation: after the last round every site scores the
 * final global model (and its own last local model) on its test split and reports to the
 * coordinator, which writes the table beside the final checkpoint (cross-site.json). The
 * simulator waits for every site's report before stopping the site processes, then puts the
 * table in its report.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CROSS_SITE_FILE, crossSiteTableSchema, type CrossSiteTable } from '../../shared/protocol/cross-site-table.ts';
import { openMsdDataset } from '../../site-agent/data/index.ts';
import { loadSiteConfig } from '../../site-agent/site-config.ts';

/** The sites that will report: those whose dataset split has a test case (a site with fewer than 3 labelled cases has none and sends nothing). */
export async function sitesWithTestCases(sites: readonly { id: string; configPath: string }[]): Promise<string[]> {
  const out: string[] = [];
  for (const s of sites) {
    const cfg = loadSiteConfig(s.configPath);
    const ds = await openMsdDataset(cfg.dataset, { cacheMB: 0, seed: cfg.seed });
    if (ds.split(cfg.seed).test.length > 0) out.push(s.id);
  }
  return out;
}

/** The table written beside the checkpoint whose artifact is `artifactPath`; null when none is there (yet) or it does not parse. */
export function readCrossSiteTable(artifactPath: string): CrossSiteTable | null {
  const file = join(dirname(artifactPath), CROSS_SITE_FILE);
  if (!existsSync(file)) return null;
  try {
    const parsed = crossSiteTableSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null; // mid-rename or being written: read again on the next poll
  }
}

/** Sites whose reports are still missing: a 'global' row each, and a 'local' row when `withLocal`. */
export function missingReports(table: CrossSiteTable | null, sites: readonly string[], withLocal: boolean): string[] {
  const has = (id: string, model: string) => table?.rows.some((r) => r.siteId === id && r.model === model) ?? false;
  return sites.filter((id) => !has(id, 'global') || (withLocal && !has(id, 'local')));
}

/** Polls until every site has reported, `timeoutMs` passes or `stop` aborts; returns the table as it then is. */
export async function waitForCrossSite(artifactPath: string, sites: readonly string[], withLocal: boolean, timeoutMs: number, stop: AbortSignal): Promise<CrossSiteTable | null> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const table = readCrossSiteTable(artifactPath);
    if (missingReports(table, sites, withLocal).length === 0 || Date.now() >= until || stop.aborted) return table;
    await new Promise((r) => setTimeout(r, 500));
  }
}
