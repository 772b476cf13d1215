/**
 * Secure aggregation (SecAgg, Bonawitz et al. 2017; SecAgg+ graphs, Bell et al. 2020): the
 * coordinator learns the sum of the sites' updates and nothing else, even when sites drop out.
 * Pure math and message contents; the protocol messages and the strategy that drive it live with
 * the coordinator and the protocol. Module map:
 *
 *   fixed-point.ts     updates → Z_{2^32} and back, with the overflow and error arithmetic
 *   mask-prg.ts        seed → mask stream (AES-256-CTR)
 *   key-agreement.ts   per-round X25519 keys, HKDF-bound pairwise seeds
 *   shamir.ts          t-of-n sharing of 32-byte secrets over F_(2^521−1)
 *   masking.ts         maskUpdate / unmask arithmetic
 *   graph.ts           complete graph (SecAgg) or Harary graph (SecAgg+)
 *   share-envelope.ts  encrypted share bundles relayed by the coordinator
 *   share-policy.ts    an honest site's rule for which shares it reveals
 *   site-round.ts      a site's four steps;  server-round.ts  the coordinator's
 */
export * from './fixed-point.ts';
export * from './mask-prg.ts';
export * from './key-agreement.ts';
export * from './shamir.ts';
export * from './masking.ts';
export * from './graph.ts';
export * from './share-envelope.ts';
export * from './share-policy.ts';
export * from './site-round.ts';
export * from './server-round.ts';
