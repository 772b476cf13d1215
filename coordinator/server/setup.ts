/**
 * From a coordinator config to everything the server needs at start: its own key pair (checked
 * against its .pub), the pinned public keys of the enrolled sites, TLS material and absolute
 * paths. Relative paths in a config are relative to the config file (shared/config/load.ts).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { CoordinatorConfigSchema, type CoordinatorConfig } from '../../shared/config/coordinator.ts';
import { loadJsonConfig, parseWith, resolveFrom } from '../../shared/config/load.ts';
import { fingerprint, loadPublicKeyFile, loadSecretKeyFile, samePublicKeys, type KeyPairs, type PublicKeys } from '../../shared/crypto/keys.ts';

export interface EnrolledSite {
  id: string;
  keys: PublicKeys;
  fingerprint: string;
  /** Training samples the site declared at enrolment; larger claims are refused. */
  maxSamples?: number;
}

export interface CoordinatorSetup {
  config: CoordinatorConfig;
  keys: KeyPairs;
  /** Fingerprint of the coordinator's key; the checkpoint store records it as keyId. */
  keyId: string;
  sites: Map<string, EnrolledSite>;
  stateDir: string;
  tls?: { cert: Buffer; key: Buffer };
}

/** Reads and validates a coordinator config file; paths inside stay relative to `baseDir`. */
export function loadCoordinatorConfig(file: string): { config: CoordinatorConfig; baseDir: string } {
  const config = loadJsonConfig(file, CoordinatorConfigSchema, 'coordinator config');
  return { config, baseDir: resolve(file, '..') };
}

/**
 * Loads keys and enrolments. `config` may be a parsed config or raw JSON-like input (defaults
 * are applied); `baseDir` anchors relative paths (default: the working directory).
 */
export function prepareCoordinator(config: CoordinatorConfig | unknown, baseDir = process.cwd()): CoordinatorSetup {
  const parsed = parseWith(CoordinatorConfigSchema, config, 'coordinator config');
  const anchor = resolve(baseDir, 'coordinator.json'); // resolveFrom takes a file path
  const at = (p: string) => resolveFrom(anchor, p);

  const keys = loadSecretKeyFile(at(parsed.secretKey));
  const declared = loadPublicKeyFile(at(parsed.publicKey));
  if (!samePublicKeys(keys, declared)) {
    throw new PatchFedError(
      'coordinator-key-mismatch',
      `Coordinator public key ${at(parsed.publicKey)} (${declared.fingerprint}) is not the public half of secret key ${at(parsed.secretKey)} (${fingerprint(keys)}); sites pin the .pub, so both must come from the same 'patchfed keygen'.`,
      { subject: at(parsed.publicKey) },
    );
  }

  const sites = new Map<string, EnrolledSite>();
  const byFingerprint = new Map<string, string>();
  for (const s of parsed.sites) {
    if (sites.has(s.id)) throw new PatchFedError('E_CONFIG', `coordinator config: site '${s.id}' is enrolled twice.`, { subject: s.id });
    const pub = loadPublicKeyFile(at(s.publicKey));
    const other = byFingerprint.get(pub.fingerprint);
    if (other !== undefined) {
      throw new PatchFedError('E_CONFIG', `coordinator config: sites '${other}' and '${s.id}' are enrolled with the same public key (${pub.fingerprint}); each site needs its own key.`, { subject: s.id });
    }
    if (pub.fingerprint === fingerprint(keys)) {
      throw new PatchFedError('E_CONFIG', `coordinator config: site '${s.id}' is enrolled with the coordinator's own public key.`, { subject: s.id });
    }
    byFingerprint.set(pub.fingerprint, s.id);
    sites.set(s.id, { id: s.id, keys: { boxPublicKey: pub.boxPublicKey, signPublicKey: pub.signPublicKey }, fingerprint: pub.fingerprint, maxSamples: s.maxSamples });
  }
  if (parsed.experiment.minSites > sites.size) {
    throw new PatchFedError('E_CONFIG', `coordinator config: experiment.minSites is ${parsed.experiment.minSites} but only ${sites.size} site(s) are enrolled.`, { subject: 'experiment.minSites' });
  }

  let tls: CoordinatorSetup['tls'];
  if (parsed.tls) {
    tls = { cert: readTlsFile(at(parsed.tls.cert), 'certificate'), key: readTlsFile(at(parsed.tls.key), 'private key') };
  }
  return { config: parsed, keys, keyId: fingerprint(keys), sites, stateDir: at(parsed.stateDir), tls };
}

function readTlsFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new PatchFedError('E_CONFIG', `coordinator config: cannot read TLS ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}.`, { subject: file });
  }
}
