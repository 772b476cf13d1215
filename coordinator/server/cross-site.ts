/**
 * Cross-site validation, the coordinator's part. After the last round every site scores the final
 * global model (and optionally its own last local model) on its test split and sends a signed
 * `final-evaluation` (site-agent/daemon/final-evaluation.ts): per-class means and case counts.
 *
 * A report counts when its signature verifies for the site's session, it answers the final
 * checkpoint of this experiment (round, version and sha256 all match), and it names exactly the
 * experiment's foreground classes. The first report per site and model is kept (sites send it
 * again after reconnects): its numbers go to the state DB's `metrics` table under the final round
 * (kinds `xval:<model>:…`, so no schema change), the table is rebuilt from there for the
 * dashboard and the simulation report, and written beside the final checkpoint as cross-site.json
 * for export's model card.
 */
import { dirname, join } from 'node:path';
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { CROSS_SITE_FILE, type CrossSiteMean, type CrossSiteRow, type CrossSiteTable } from '../../shared/protocol/cross-site-table.ts';
import { safeParseMessage, type FinalEvaluationMessage } from '../../shared/protocol/messages.ts';
import type { AuthenticatedSite } from '../../shared/protocol/session.ts';
import { verifySiteSigned } from '../../shared/protocol/site-signed.ts';
import { nodeFileIO, writeFileAtomic } from '../store/durable-fs.ts';
import type { MetricInput, MetricRecord, RoundRecord, StateDb } from '../store/index.ts';
import type { CheckpointService } from './checkpoint-service.ts';
import type { EventHub } from './events.ts';
import type { Log } from './log.ts';

const PREFIX = 'xval:';
const METRICS = ['dice', 'hd95', 'nsd'] as const;

export interface CrossSiteContext {
  db: StateDb;
  hub: EventHub;
  log: Log;
  experiment: { id: string; rounds: number; labels: Record<string, string> };
  enrolled: readonly string[];
  checkpoints: CheckpointService;
}

function refuse(siteId: string, why: string): never {
  throw new PatchFedError('final-evaluation-refused', `final-evaluation from site '${siteId}' refused: ${why}`, { subject: siteId });
}

/** Foreground class names in label order (label 0 is background). */
function foregroundLabels(labels: Record<string, string>): string[] {
  return Object.keys(labels)
    .map(Number)
    .filter((k) => k !== 0)
    .sort((a, b) => a - b)
    .map((k) => labels[String(k)] ?? String(k));
}

/** One report as metric rows: means (absent when null), defined counts and infinite counts per class. */
function metricRows(m: Omit<FinalEvaluationMessage, 'signature'>): MetricInput[] {
  const p = `${PREFIX}${m.model}:`;
  const rows: MetricInput[] = [
    { kind: `${p}cases`, value: m.cases },
    { kind: `${p}nsd_tolerance_mm`, value: m.nsdToleranceMm },
    { kind: `${p}reported_version`, value: m.checkpointVersion },
  ];
  if (m.localRound !== undefined) rows.push({ kind: `${p}local_round`, value: m.localRound });
  for (const c of m.classes) {
    for (const metric of METRICS) {
      const v = c[metric];
      if (v.mean !== null) rows.push({ kind: `${p}${metric}`, label: c.name, value: v.mean });
      rows.push({ kind: `${p}${metric}:n`, label: c.name, value: v.n }, { kind: `${p}${metric}:inf`, label: c.name, value: v.infinite });
    }
  }
  return rows;
}

export class CrossSiteValidation {
  constructor(private readonly ctx: CrossSiteContext) {}

  /** The final round, once the experiment has completed all its rounds. */
  private finalRound(): RoundRecord | null {
    const last = this.ctx.db.lastCompleted(this.ctx.experiment.id);
    return last && last.round >= this.ctx.experiment.rounds && last.checkpointVersion !== null ? last : null;
  }

  /** Applies a site's final-evaluation event; throws PatchFedError for a malformed, forged or mismatched one. */
  handle(site: AuthenticatedSite, payload: unknown): void {
    const parsed = safeParseMessage('final-evaluation', payload);
    if (!parsed.ok) throw parsed.error;
    const m = verifySiteSigned('final-evaluation', parsed.data, site.sessionId, site.siteKeys.signPublicKey);
    const { experiment, db } = this.ctx;
    if (m.experimentId !== experiment.id) refuse(site.siteId, `it is for experiment '${m.experimentId}', not '${experiment.id}'`);
    const final = this.finalRound();
    if (!final) refuse(site.siteId, 'the experiment has not completed');
    const latest = this.ctx.checkpoints.latest.meta;
    if (m.round !== final.round || m.checkpointVersion !== final.checkpointVersion || m.checkpointVersion !== latest.version || m.checkpointSha256 !== latest.sha256) {
      refuse(site.siteId, `it scores round ${m.round}, checkpoint v${m.checkpointVersion}, but the final model is round ${final.round}, v${latest.version} (sha256 ${latest.sha256.slice(0, 12)}…)`);
    }
    const want = foregroundLabels(experiment.labels);
    const got = m.classes.map((c) => c.name);
    if (got.length !== want.length || got.some((n, i) => n !== want[i])) refuse(site.siteId, `its classes [${got.join(', ')}] are not the experiment's [${want.join(', ')}]`);
    if (db.listMetrics(experiment.id, { round: final.round, siteId: site.siteId, kind: `${PREFIX}${m.model}:cases` }).some((r) => r.roundId === final.id)) return; // a repeat after a reconnect
    db.recordMetrics(final.id, site.siteId, metricRows(m));
    const dice = m.classes.map((c) => `${c.name} ${c.dice.mean === null ? '—' : c.dice.mean.toFixed(3)}`).join(', ');
    const what = m.model === 'global' ? `the final global model v${m.checkpointVersion}` : `its last local model (round ${m.localRound ?? '?'})`;
    this.ctx.hub.note(
      'cross-site-validation',
      { siteId: site.siteId, model: m.model, round: final.round, message: `Site '${site.siteId}' scored ${what} on its ${m.cases} test case(s): Dice ${dice}.` },
      'cross-site-validation',
    );
    this.writeBesideCheckpoint();
  }

  /** The table for the final checkpoint; null before the experiment completes. */
  table(): CrossSiteTable | null {
    const final = this.finalRound();
    if (!final || final.checkpointVersion === null) return null;
    const { experiment, db } = this.ctx;
    const meta = this.ctx.checkpoints.store.get(final.checkpointVersion);
    const labels = foregroundLabels(experiment.labels);
    const records = db.listMetrics(experiment.id, { round: final.round }).filter((r) => r.roundId === final.id && r.siteId !== null && r.kind.startsWith(PREFIX));
    const groups = new Map<string, MetricRecord[]>();
    for (const r of records) {
      const model = r.kind.slice(PREFIX.length).split(':')[0] ?? '';
      const key = `${r.siteId}\u0000${model}`;
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    let tolerance: number | null = null;
    const rows: CrossSiteRow[] = [];
    for (const [key, rs] of groups) {
      const [siteId = '', model = ''] = key.split('\u0000');
      if (model !== 'global' && model !== 'local') continue;
      const p = `${PREFIX}${model}:`;
      const value = (kind: string, label: string | null = null) => rs.find((r) => r.kind === `${p}${kind}` && r.label === label)?.value;
      const mean = (metric: string, label: string): CrossSiteMean => ({ mean: value(metric, label) ?? null, n: value(`${metric}:n`, label) ?? 0, infinite: value(`${metric}:inf`, label) ?? 0 });
      const classes = Object.fromEntries(labels.map((l) => [l, { dice: mean('dice', l), hd95: mean('hd95', l), nsd: mean('nsd', l) }]));
      const dices = labels.map((l) => classes[l]?.dice.mean).filter((d): d is number => typeof d === 'number');
      tolerance ??= value('nsd_tolerance_mm') ?? null;
      rows.push({
        siteId,
        model,
        localRound: value('local_round') ?? null,
        cases: value('cases') ?? 0,
        classes,
        meanDice: dices.length === 0 ? null : dices.reduce((a, b) => a + b, 0) / dices.length,
        reportedAt: rs[0]?.recordedAt ?? '',
      });
    }
    rows.sort((a, b) => a.siteId.localeCompare(b.siteId) || a.model.localeCompare(b.model));
    const participants = new Map<string, { siteId: string; rounds: number; samples: number | null }>();
    for (const r of db.listRounds(experiment.id)) {
      if (r.status !== 'complete' || r.round < 1) continue;
      for (const u of db.listSiteUpdates(r.id)) {
        if (u.status !== 'accepted') continue;
        const p = participants.get(u.siteId) ?? { siteId: u.siteId, rounds: 0, samples: null };
        participants.set(u.siteId, { siteId: u.siteId, rounds: p.rounds + 1, samples: u.numSamples ?? p.samples });
      }
    }
    return {
      kind: 'patchfed-cross-site-validation',
      experimentId: experiment.id,
      round: final.round,
      checkpointVersion: final.checkpointVersion,
      checkpointSha256: meta?.sha256 ?? '',
      nsdToleranceMm: tolerance,
      labels,
      enrolledSites: [...this.ctx.enrolled],
      rows,
      participants: [...participants.values()].sort((a, b) => a.siteId.localeCompare(b.siteId)),
    };
  }

  /** cross-site.json in the final checkpoint's folder (the model card of `patchfed export` reads it). */
  private writeBesideCheckpoint(): void {
    const t = this.table();
    if (!t) return;
    try {
      const file = join(dirname(this.ctx.checkpoints.store.artifactPath(t.checkpointVersion)), CROSS_SITE_FILE);
      writeFileAtomic(nodeFileIO, file, new TextEncoder().encode(`${JSON.stringify(t, null, 2)}\n`));
    } catch (e) {
      this.ctx.log('error', 'could not write the cross-site validation table beside the final checkpoint', { error: errorMessage(e) });
    }
  }
}
