/**
 * The example deployment configs in configs/ are what a consortium copies: they must pass the
 * real schema loaders, and the key layout they reference (configs/README.md) must be the one
 * `patchfed keygen` produces and the coordinator and site daemon load.
 */
import { chmodSync, cpSync, copyFileSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCoordinatorConfig, prepareCoordinator } from '../coordinator/server/setup.ts';
import { generateKeyPairs, loadPublicKeyFile, loadSecretKeyFile, samePublicKeys, writeKeyFiles } from '../shared/crypto/keys.ts';
import { loadSiteConfig } from '../site-agent/site-config.ts';
import { writeDashboardToken } from '../cli/config-token.ts';
import { generateDashboardToken } from '../shared/config/dashboard-token.ts';

const CONFIGS = 'configs';
const work = mkdtempSync(join(tmpdir(), 'patchfed-configs-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('example configs', () => {
  it('configs/coordinator.json is refused until its placeholder token is replaced (patchfed token --config); then both examples pass the schema loaders', () => {
    expect(() => loadCoordinatorConfig(join(CONFIGS, 'coordinator.json'))).toThrow(/dashboardToken: is a placeholder, not a token: run `patchfed token`/);
    const copy = join(work, 'coordinator-with-token.json');
    copyFileSync(join(CONFIGS, 'coordinator.json'), copy);
    const token = generateDashboardToken();
    writeDashboardToken(copy, token);
    expect(statSync(copy).mode & 0o077).toBe(0); // it holds a secret now
    const { config } = loadCoordinatorConfig(copy);
    expect(config.dashboardToken).toBe(token);
    expect(config.sites.length).toBeGreaterThanOrEqual(2);
    expect(config.experiment.minSites).toBeLessThanOrEqual(config.sites.length);
    expect(config.tls).toBeDefined();

    const site = loadSiteConfig(join(CONFIGS, 'site-example.json'));
    expect(site.federation).toBeDefined();
    // The site is one the coordinator enrols, and both sides name the files the README lays out.
    const enrolled = config.sites.find((s) => s.id === site.siteId);
    expect(enrolled, `${site.siteId} is enrolled in coordinator.json`).toBeDefined();
    expect(enrolled!.publicKey).toBe(`sites/${site.siteId}.pub`);
    expect(basename(site.federation!.publicKey)).toBe(`${site.siteId}.pub`);
    expect(basename(site.federation!.coordinatorPublicKey)).toBe(basename(config.publicKey));
    expect(site.federation!.coordinatorUrl.startsWith('https://')).toBe(true);
  });

  it('following configs/README.md (keygen, enrolment copies) gives a coordinator setup that loads', () => {
    const dir = join(work, 'deploy');
    cpSync(CONFIGS, dir, { recursive: true });
    writeDashboardToken(join(dir, 'coordinator.json'), generateDashboardToken()); // patchfed token --config configs/coordinator.json
    const { config, baseDir } = loadCoordinatorConfig(join(dir, 'coordinator.json'));
    // patchfed keygen --out configs/keys/coordinator, and on every site --out configs/keys/<site>.
    writeKeyFiles(join(dir, 'keys', 'coordinator'), generateKeyPairs());
    for (const s of config.sites) {
      writeKeyFiles(join(dir, 'keys', s.id), generateKeyPairs());
      copyFileSync(join(dir, 'keys', `${s.id}.pub`), join(dir, s.publicKey)); // enrolment
    }
    // prepareCoordinator only reads the TLS files; the HTTPS server parses them at start.
    writeFileSync(join(dir, config.tls!.cert), 'certificate');
    writeFileSync(join(dir, config.tls!.key), 'key');
    chmodSync(join(dir, config.tls!.key), 0o600);

    const setup = prepareCoordinator(config, baseDir);
    expect([...setup.sites.keys()].sort()).toEqual(config.sites.map((s) => s.id).sort());
    expect(setup.stateDir).toBe(join(dir, 'state'));

    // The site daemon loads its own secret key and pins the coordinator's public key from the same layout.
    const site = loadSiteConfig(join(dir, 'site-example.json'));
    const siteKeys = loadSecretKeyFile(site.federation!.secretKey);
    expect(samePublicKeys(siteKeys, loadPublicKeyFile(site.federation!.publicKey))).toBe(true);
    expect(samePublicKeys(setup.sites.get(site.siteId)!.keys, siteKeys)).toBe(true);
    expect(samePublicKeys(loadPublicKeyFile(site.federation!.coordinatorPublicKey), setup.keys)).toBe(true);
  });
});
