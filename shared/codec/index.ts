export * from './weights-codec.ts';
export * from './weights-stream.ts';
export * from './weights-checks.ts';
export * from './manifest.ts';
export * from './weight-runs.ts';
export * from './weights-file.ts';
