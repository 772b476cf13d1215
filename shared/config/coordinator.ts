import { z } from 'zod';
import { ModelSpecSchema } from './model.ts';
import { StrategySpecSchema } from './strategy.ts';

/** What the consortium trains: declared once, in the coordinator's config. */
export const ExperimentSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
    task: z.string().min(1),
    /** Label schema, e.g. {"0":"background","1":"edema",...}; every site's dataset must match. */
    labels: z.record(z.string().regex(/^\d+$/), z.string().min(1)),
    /** Modality schema, e.g. {"0":"FLAIR",...}. */
    modalities: z.record(z.string().regex(/^\d+$/), z.string().min(1)),
    model: ModelSpecSchema,
    rounds: z.number().int().positive(),
    minSites: z.number().int().positive().default(1),
    fractionFit: z.number().gt(0).lte(1).default(1),
    /** Local optimisation steps per round. */
    localSteps: z.number().int().positive().default(20),
    learningRate: z.number().positive().default(3e-4),
    roundDeadlineSeconds: z.number().positive().default(600),
    /**
     * Before the first round after a (re)start, wait up to this long for every enrolled site to
     * connect (the round starts as soon as all are online); later rounds start once minSites are.
     */
    startupGraceSeconds: z.number().min(0).default(30),
    /** Retries of a round that missed its minimum before the experiment stops. */
    maxRoundAttempts: z.number().int().positive().default(3),
    /** Aggregation strategy (shared/config/strategy.ts): fedavg, fedprox (with mu) or fedbn. */
    strategy: StrategySpecSchema.default({ name: 'fedavg' }),
    /** Reject updates whose L2 distance from the global model exceeds this (0 = off). */
    updateNormBound: z.number().min(0).default(0),
    /** Largest training-sample count a site may claim: its weight in the mean cannot exceed it. */
    maxSamplesPerSite: z.number().int().min(1).default(1_000_000),
    checkpointRetention: z.number().int().positive().default(10),
    seed: z.number().int().default(1),
  })
  .strict();
export type Experiment = z.infer<typeof ExperimentSchema>;

export const CoordinatorConfigSchema = z
  .object({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8740),
    stateDir: z.string().default('./state'),
    secretKey: z.string(),
    publicKey: z.string(),
    tls: z.object({ cert: z.string(), key: z.string() }).strict().optional(),
    /** Token for the dashboard and admin routes (>= 16 characters). */
    dashboardToken: z.string().min(16),
    /** Enrolled sites: only these public keys may join. */
    sites: z.array(z.object({ id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), publicKey: z.string() }).strict()).min(1),
    limits: z
      .object({
        maxConnections: z.number().int().positive().default(256),
        maxMessagesPerSecond: z.number().positive().default(200),
        /** Checkpoint download chunk size; the protocol allows 1-4 MiB (shared/protocol/limits.ts). */
        chunkBytes: z.number().int().min(1024 * 1024).max(4 * 1024 * 1024).default(2 * 1024 * 1024),
        /** A connection that has not authenticated within this time is dropped. */
        handshakeTimeoutSeconds: z.number().positive().max(600).default(15),
      })
      .strict()
      .default({ maxConnections: 256, maxMessagesPerSecond: 200, chunkBytes: 2 * 1024 * 1024, handshakeTimeoutSeconds: 15 }),
    experiment: ExperimentSchema,
  })
  .strict();
export type CoordinatorConfig = z.infer<typeof CoordinatorConfigSchema>;
