/**
 * What the simulation prints: a block per completed round (every site's plan, training loss and
 * the per-class validation Dice it measured for the global model it received, plus the mean),
 * and the summary at the end (global Dice after each round, baselines).
 */
import type { RoundRow } from './coordinator-records.ts';
import { meanDice, meanOverLabels, type LabelDice, type SimulationReport } from './report.ts';
import { formatBaselineTable } from './baseline-table.ts';

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const lpad = (s: string, n: number) => (s.length >= n ? s : ' '.repeat(n - s.length) + s);
const num = (v: number | null | undefined, digits = 3) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–');

export function formatBytes(n: number | null | undefined): string {
  if (typeof n !== 'number') return '–';
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(2)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${n} B`;
}

export function formatSeconds(ms: number | null | undefined): string {
  return typeof ms === 'number' ? `${(ms / 1000).toFixed(1)} s` : '–';
}

/** Short column names for label names ("non-enhancing tumor" → "non-enhan"). */
export function labelHeader(label: string, width = 9): string {
  return label.length <= width ? label : label.slice(0, width);
}

function diceCells(d: LabelDice | null | undefined, labels: readonly string[]): string {
  const cells = labels.map((l) => lpad(num(d?.[l]), 9));
  return `${cells.join(' ')} ${lpad(num(meanOverLabels(d ?? null, labels)), 6)}`;
}

function diceHeader(labels: readonly string[]): string {
  return `${labels.map((l) => lpad(labelHeader(l), 9)).join(' ')} ${lpad('mean', 6)}`;
}

/** The block printed when round `row` completes. `inputVersion` is the checkpoint the sites received. */
export function formatRoundBlock(row: RoundRow, totalRounds: number, labels: readonly string[], inputVersion: number | null, sha: string | null): string {
  const accepted = row.updates.filter((u) => u.status === 'accepted');
  const lines: string[] = [];
  lines.push(
    `round ${row.round}/${totalRounds}${row.attempt > 1 ? ` (attempt ${row.attempt})` : ''}: ${accepted.length}/${row.selected.length} sites aggregated, ` +
      `${formatSeconds(row.durationMs)}, ${formatBytes(row.bytesMoved)} moved → checkpoint v${row.checkpointVersion}${sha ? ` ${sha.slice(0, 12)}…` : ''}`,
  );
  lines.push(`  ${pad('site', 8)} ${pad('patch', 10)} ${lpad('batch', 5)} ${lpad('loss', 7)}  Dice of global v${inputVersion ?? '?'} ${diceHeader(labels)}`);
  const dices: LabelDice[] = [];
  for (const id of row.selected) {
    const us = row.updates.filter((u) => u.siteId === id);
    const u = us.find((x) => x.status === 'accepted') ?? us[us.length - 1];
    const m = u?.metrics ?? null;
    if (u?.status === 'accepted' && m?.dice) dices.push(m.dice);
    const status = !u ? 'dropped out: no update' : u.status === 'rejected' ? `REJECTED: ${u.reason ?? ''}` : null;
    const head = `  ${pad(id, 8)} ${pad(m?.patch ? m.patch.join('×') : '–', 10)} ${lpad(m?.batch ? String(m.batch) : '–', 5)} ${lpad(num(m?.loss ?? null, 4), 7)}`;
    lines.push(status && !m ? `${head}  ${status}` : `${head}  ${' '.repeat(16)}${diceCells(m?.dice, labels)}${status ? `  ${status}` : ''}`);
  }
  const mean = meanDice(dices, labels);
  lines.push(`  ${pad('mean', 8)} ${' '.repeat(16)} ${lpad(num(meanOf(accepted.map((u) => u.metrics?.loss)), 4), 7)}  ${' '.repeat(16)}${diceCells(mean, labels)}`);
  return lines.join('\n');
}

function meanOf(values: (number | undefined)[]): number | null {
  const v = values.filter((x): x is number => typeof x === 'number');
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

/** Global model Dice after each round, then the baselines. */
export function formatSummary(report: SimulationReport): string {
  const labels = report.labels;
  const lines: string[] = [];
  lines.push('', `Global model after each round (validation Dice, mean over ${report.sites.length} sites):`);
  lines.push(`  ${pad('round', 6)} ${diceHeader(labels)} ${lpad('time', 8)} ${lpad('moved', 10)}  checkpoint`);
  lines.push(`  ${pad('0', 6)} ${diceCells(report.initial.globalDice, labels)} ${lpad('', 8)} ${lpad('', 10)}  ${report.initial.checkpointSha256?.slice(0, 12) ?? ''} (initial)`);
  for (const r of report.rounds) {
    lines.push(`  ${pad(String(r.round), 6)} ${diceCells(r.globalDice, labels)} ${lpad(formatSeconds(r.durationMs), 8)} ${lpad(formatBytes(r.bytesMoved), 10)}  ${r.checkpointSha256?.slice(0, 12) ?? ''}`);
  }
  if (report.baselines) {
    const b = report.baselines;
    lines.push('', 'What federation buys (validation Dice, mean over sites, each site on its own validation split):');
    lines.push(`  ${pad('training', 34)} ${diceHeader(labels)}`);
    lines.push(`  ${pad('local only (each site alone)', 34)} ${diceCells(b.localOnly.meanDice, labels)}   ${b.localOnly.steps} steps/site, ${formatSeconds(b.localOnly.wallMs)}`);
    lines.push(`  ${pad(`federated (PatchFed, ${report.experiment.strategy})`, 34)} ${diceCells(b.federated.meanDice, labels)}`);
    lines.push(`  ${pad('pooled (all data centralised)', 34)} ${diceCells(b.pooled.meanDice, labels)}   ${b.pooled.steps} steps, ${formatSeconds(b.pooled.wallMs)}`);
    lines.push(...formatBaselineTable(report));
  }
  if (report.privacy) {
    const p = report.privacy;
    const perRound = p.perRound.map((r) => `${r.round}: ${r.epsilonSpent.toPrecision(4)}`).join(', ');
    lines.push('', `Differential privacy (${p.mode}, z ${p.noiseMultiplier}, C ${p.clipNorm}): ε = ${p.epsilon.toPrecision(4)} at δ = ${p.delta}${p.epsilonBudget !== null ? ` (budget ${p.epsilonBudget})` : ''}; ε after each round: ${perRound}.`);
  }
  const s = report.summary;
  lines.push(
    '',
    `${s.message}`,
    `Mean global Dice ${num(s.initialMeanDice)} (initial) → ${num(s.finalMeanDice)} after ${s.roundsCompleted} round(s)${s.improved === null ? '' : s.improved ? ': improved' : ': NOT improved'}; ` +
      `${formatBytes(s.totalBytesMoved)} moved; wall time ${formatSeconds(s.wallTimeMs)}.`,
  );
  return lines.join('\n');
}
