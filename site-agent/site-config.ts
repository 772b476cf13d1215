import { loadJsonConfig, resolveFrom } from '../shared/config/load.ts';
import { SiteConfigSchema, type SiteConfig } from '../shared/config/site.ts';

/** A site config with every path resolved against the config file's folder. */
export function loadSiteConfig(path: string): SiteConfig {
  const cfg = loadJsonConfig(path, SiteConfigSchema, 'site config');
  const r = (p: string) => resolveFrom(path, p);
  return {
    ...cfg,
    dataset: r(cfg.dataset),
    workDir: r(cfg.workDir),
    logFile: cfg.logFile ? r(cfg.logFile) : undefined,
    federation: cfg.federation && {
      ...cfg.federation,
      secretKey: r(cfg.federation.secretKey),
      publicKey: r(cfg.federation.publicKey),
      coordinatorPublicKey: r(cfg.federation.coordinatorPublicKey),
      caCertificate: cfg.federation.caCertificate ? r(cfg.federation.caCertificate) : undefined,
    },
  };
}
