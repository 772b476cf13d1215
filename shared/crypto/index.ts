export * from './encoding.ts';
export * from './keys.ts';
export * from './handshake.ts';
export * from './seal.ts';
