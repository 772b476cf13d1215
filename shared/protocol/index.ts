export * from './limits.ts';
export * from './messages.ts';
export * from './transport.ts';
export * from './transfer.ts';
export * from './checkpoint-transfer.ts';
export * from './session.ts';
