import { z } from 'zod';
import { assessDashboardToken } from './dashboard-token.ts';
import { ModelSpecSchema } from './model.ts';
import { StrategySpecSchema } from './strategy.ts';
import { AggregationSpecSchema, secureAggregationProblem } from './aggregation.ts';

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
    /** How updates are combined: `{ secure: { threshold } }` turns on secure aggregation (shared/config/aggregation.ts). */
    aggregation: AggregationSpecSchema.optional(),
    /** Reject updates whose L2 distance from the global model exceeds this (0 = off). */
    updateNormBound: z.number().min(0).default(0),
    /**
     * Reject an update whose distance from the global model exceeds this multiple of the global
     * model's own L2 norm (0 = off). Local training moves a model by a fraction of its norm; a
     * poisoned or diverged update does not.
     */
    maxUpdateNormRatio: z.number().min(0).default(10),
    /** Never publish a new global model whose L2 norm exceeds this multiple of the previous one's (0 = off). */
    maxGlobalNormGrowth: z.number().min(0).default(5),
    /** Largest training-sample count a site may claim (its weight in the mean); a site's enrolment may set a lower one. */
    maxSamplesPerSite: z.number().int().min(1).default(100_000),
    checkpointRetention: z.number().int().positive().default(10),
    seed: z.number().int().default(1),
  })
  .strict();
export type Experiment = z.infer<typeof ExperimentSchema>;

const LIMIT_DEFAULTS = {
  maxConnections: 256,
  maxPreAuthConnections: 64,
  maxPreAuthConnectionsPerIp: 8,
  maxMessagesPerSecond: 200,
  chunkBytes: 2 * 1024 * 1024,
  handshakeTimeoutSeconds: 5,
  maxEventRows: 20_000,
  uploadBufferMB: 64,
};

export const CoordinatorConfigSchema = z
  .object({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8740),
    stateDir: z.string().default('./state'),
    secretKey: z.string(),
    publicKey: z.string(),
    tls: z.object({ cert: z.string(), key: z.string() }).strict().optional(),
    /** Token for the dashboard and admin routes: >= 128 bits of randomness (`patchfed token`; see dashboard-token.ts). */
    dashboardToken: z.string().superRefine((token, ctx) => {
      const verdict = assessDashboardToken(token);
      if (!verdict.ok) ctx.addIssue({ code: 'custom', message: verdict.reason });
    }),
    /** Enrolled sites: only these public keys may join. */
    sites: z
      .array(
        z
          .object({
            id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
            publicKey: z.string(),
            /** The training-sample count this site declared at enrolment: larger claims are refused. */
            maxSamples: z.number().int().min(1).optional(),
          })
          .strict(),
      )
      .min(1),
    limits: z
      .object({
        /** Authenticated connections (sites and dashboard viewers); enrolled sites always get in. */
        maxConnections: z.number().int().positive().default(LIMIT_DEFAULTS.maxConnections),
        /** Connections that have not authenticated yet, from all addresses together (their own slots). */
        maxPreAuthConnections: z.number().int().positive().default(LIMIT_DEFAULTS.maxPreAuthConnections),
        /** Connections that have not authenticated yet, from one IP address. */
        maxPreAuthConnectionsPerIp: z.number().int().positive().default(LIMIT_DEFAULTS.maxPreAuthConnectionsPerIp),
        maxMessagesPerSecond: z.number().positive().default(LIMIT_DEFAULTS.maxMessagesPerSecond),
        /** Checkpoint download chunk size; the protocol allows 1-4 MiB (shared/protocol/limits.ts). */
        chunkBytes: z.number().int().min(1024 * 1024).max(4 * 1024 * 1024).default(LIMIT_DEFAULTS.chunkBytes),
        /** A connection that has not authenticated within this time (from its first byte) is dropped. */
        handshakeTimeoutSeconds: z.number().positive().max(600).default(LIMIT_DEFAULTS.handshakeTimeoutSeconds),
        /** Rows kept in the state DB's event log; the oldest are pruned beyond it. */
        maxEventRows: z.number().int().min(100).default(LIMIT_DEFAULTS.maxEventRows),
        /**
         * Update bytes all uploading sites together may have in flight (sent, not yet acknowledged):
         * each round task sizes the sites' chunks and windows from it, so the coordinator's
         * buffers stay bounded however many sites upload at once.
         */
        uploadBufferMB: z.number().int().min(8).max(4096).default(LIMIT_DEFAULTS.uploadBufferMB),
      })
      .strict()
      .default(LIMIT_DEFAULTS),
    experiment: ExperimentSchema,
  })
  .strict()
  .superRefine((c, ctx) => {
    // Secure aggregation's threshold depends on how many sites are enrolled (aggregation.ts).
    const secure = c.experiment.aggregation?.secure;
    const problem = secure ? secureAggregationProblem(secure, c.experiment, c.sites.length) : null;
    if (problem) ctx.addIssue({ code: 'custom', path: ['experiment', 'aggregation', 'secure'], message: problem });
  });
export type CoordinatorConfig = z.infer<typeof CoordinatorConfigSchema>;
