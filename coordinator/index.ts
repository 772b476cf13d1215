/** The coordinator service: `startCoordinator` (programmatic) and its config loading. */
export * from './server/index.ts';
