export { mountDashboard, DASHBOARD_NAMESPACE } from './mount.ts';
export { serializePayload, buildPayload, MAX_DASHBOARD_EVENTS, MAX_DASHBOARD_ROUNDS, MAX_DASHBOARD_CHECKPOINTS } from './payload.ts';
export { DashboardAuth, SESSION_COOKIE, constantTimeEqual } from './auth.ts';
export type * from './types.ts';
