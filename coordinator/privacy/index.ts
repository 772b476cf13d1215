/** The coordinator's privacy accounting (RDP of the subsampled Gaussian, ε budget). Clipping and noise are shared/dp. */
export { checkBudget, RdpAccountant, singleRoundEpsilon, type AccountantState, type BudgetCheck, type DpRound, type LedgerEntry, type PrivacyBudget } from './accountant.ts';
export { computeRdp, DEFAULT_RDP_ORDERS, epsilonFromRdp, OPACUS_RDP_ORDERS, rdpOfSubsampledGaussian, type EpsilonAtOrder, type EpsilonConversion } from './rdp.ts';
export { PRIVACY_BUDGET_EXHAUSTED, PrivacyLedger, privacyRecordSchema, readPrivacyRecord, type PrivacyRecord, type PrivacyRound, type PrivacySettings } from './ledger.ts';
