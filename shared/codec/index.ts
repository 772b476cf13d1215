export * from './weights-codec.ts';
export * from './manifest.ts';
export * from './validate.ts';
