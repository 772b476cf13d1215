/**
 * The privacy record every checkpoint of a DP experiment carries in meta.json (`extra.privacy`):
 * the DP settings, ε spent so far, ε per round, and the accountant's ledger, from which ε is
 * recomputed exactly (accountant.ts). The checkpoint a round starts from is the one source of
 * truth: a restarted coordinator, or a round retried after a failed aggregation, continues from
 * the ledger of the last committed round, so a round is accounted if and only if its model was
 * published. The dashboard and the simulation report read the same record.
 */
import { z } from 'zod';
import { PatchFedError } from '../../shared/errors.ts';
import type { DpMode } from '../../shared/dp/index.ts';
import { checkBudget, RdpAccountant, singleRoundEpsilon, type BudgetCheck, type DpRound } from './accountant.ts';

/** Error code of a round refused because it would take ε above the configured budget. */
export const PRIVACY_BUDGET_EXHAUSTED = 'privacy-budget-exhausted';

export interface PrivacySettings {
  mode: DpMode;
  noiseMultiplier: number;
  clipNorm: number;
  delta: number;
  epsilonBudget?: number;
}

const roundSchema = z.object({
  round: z.int().min(1),
  /** Probability with which a site took part: selected / online sites when the round opened. */
  samplingRate: z.number().gt(0).max(1),
  noiseMultiplier: z.number().gt(0),
  /** ε of this round on its own, at δ. */
  epsilon: z.number().min(0),
  /** ε spent after this round (all rounds so far composed), at δ. */
  epsilonSpent: z.number().min(0),
});
export type PrivacyRound = z.output<typeof roundSchema>;

export const privacyRecordSchema = z.object({
  mode: z.enum(['central', 'distributed']),
  noiseMultiplier: z.number().gt(0),
  clipNorm: z.number().gt(0),
  delta: z.number().gt(0).lt(1),
  epsilonBudget: z.number().gt(0).nullable(),
  /** ε spent so far at δ (RDP accountant, improved conversion). */
  epsilon: z.number().min(0),
  /** RDP order at which that ε is tightest. */
  order: z.number(),
  rounds: z.int().min(0),
  perRound: z.array(roundSchema),
  accountant: z.object({
    version: z.literal(1),
    orders: z.array(z.number().gt(1)).min(1),
    ledger: z.array(z.object({ samplingRate: z.number().gt(0).max(1), noiseMultiplier: z.number().gt(0), rounds: z.int().min(1) })),
  }),
});
export type PrivacyRecord = z.output<typeof privacyRecordSchema>;

export class PrivacyLedger {
  private constructor(
    private readonly accountant: RdpAccountant,
    readonly perRound: readonly PrivacyRound[],
  ) {}

  static empty(): PrivacyLedger {
    return new PrivacyLedger(new RdpAccountant(), []);
  }

  /**
   * The ledger saved with a checkpoint. The initial model (round 0) has none; any later
   * checkpoint without one was trained without DP, and no finite ε covers those rounds.
   */
  static fromCheckpoint(checkpoint: { version: number; round: number; extra: Readonly<Record<string, unknown>> }): PrivacyLedger {
    const saved = checkpoint.extra.privacy;
    const what = `checkpoint v${checkpoint.version} (round ${checkpoint.round})`;
    if (saved === undefined) {
      if (checkpoint.round === 0) return PrivacyLedger.empty();
      throw new PatchFedError(
        'dp-ledger-missing',
        `${what} has no privacy ledger: its rounds ran without differential privacy, so no finite ε covers this experiment. Start a new experiment id to train with DP.`,
        { subject: String(checkpoint.version) },
      );
    }
    const parsed = privacyRecordSchema.safeParse(saved);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new PatchFedError('dp-ledger-corrupt', `${what}: meta.json extra.privacy.${issue?.path.join('.') ?? ''} is not valid (${issue?.message ?? 'invalid'}).`, { subject: String(checkpoint.version) });
    }
    const accountant = RdpAccountant.fromJSON(parsed.data.accountant);
    if (accountant.roundsAccounted !== parsed.data.rounds) {
      throw new PatchFedError('dp-ledger-corrupt', `${what}: the privacy ledger accounts ${accountant.roundsAccounted} round(s) but records ${parsed.data.rounds}.`, { subject: String(checkpoint.version) });
    }
    return new PrivacyLedger(accountant, parsed.data.perRound);
  }

  get rounds(): number {
    return this.accountant.roundsAccounted;
  }

  epsilon(delta: number): number {
    return this.accountant.epsilon(delta).epsilon;
  }

  budgetCheck(budget: { epsilon: number; delta: number }, next: DpRound): BudgetCheck {
    return checkBudget(this.accountant, budget, next);
  }

  /** The record of the checkpoint that `round` (run as `next`) produces; this ledger is unchanged. */
  recordAfter(round: number, next: DpRound, settings: PrivacySettings): PrivacyRecord {
    const after = RdpAccountant.fromJSON(this.accountant.toJSON());
    after.compose(next);
    const spent = after.epsilon(settings.delta);
    const entry: PrivacyRound = {
      round,
      samplingRate: next.samplingRate,
      noiseMultiplier: next.noiseMultiplier,
      epsilon: singleRoundEpsilon(next, settings.delta, after.orders).epsilon,
      epsilonSpent: spent.epsilon,
    };
    return {
      mode: settings.mode,
      noiseMultiplier: settings.noiseMultiplier,
      clipNorm: settings.clipNorm,
      delta: settings.delta,
      epsilonBudget: settings.epsilonBudget ?? null,
      epsilon: spent.epsilon,
      order: spent.order,
      rounds: after.roundsAccounted,
      perRound: [...this.perRound, entry],
      accountant: after.toJSON(),
    };
  }
}

/** The privacy record in a checkpoint's meta.json extra, or null (no DP, round 0, or unreadable). */
export function readPrivacyRecord(extra: unknown): PrivacyRecord | null {
  if (extra === null || typeof extra !== 'object') return null;
  const parsed = privacyRecordSchema.safeParse((extra as { privacy?: unknown }).privacy);
  return parsed.success ? parsed.data : null;
}
