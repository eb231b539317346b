import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { envSchema, parseEnv } from '@app/config/env.schema';
import { REPO_ROOT } from '../support/app-process';

/** No container engine or cluster here: parse the manifests and check their wiring against the app itself. */
const appVariables = new Set(Object.keys(envSchema.shape));
const read = (path: string) =>
  parseAllDocuments(readFileSync(join(REPO_ROOT, path), 'utf8'), { merge: true }).map((doc) => {
    expect(doc.errors).toEqual([]);
    return doc.toJS();
  });

describe('docker-compose.yml', () => {
  const [compose] = read('docker-compose.yml');
  const services = compose.services as Record<string, any>;

  it('runs Redis with persistence, 2 APIs behind one port, 2 workers, and a shared image volume', () => {
    expect(Object.keys(services).sort()).toEqual(['api-1', 'api-2', 'gateway', 'redis', 'worker-1', 'worker-2']);
    expect(services.redis.command.join(' ')).toContain('--appendonly yes');
    // BullMQ needs noeviction; both apps refuse to start on another policy.
    expect(services.redis.command.join(' ')).toContain('--maxmemory-policy noeviction');
    expect(services.redis.command.join(' ')).toMatch(/--maxmemory \d+[kmg]b/);
    expect(services.redis.volumes[0]).toMatch(/:\/data$/);
    expect(services.gateway.ports).toEqual(['3000:3000']);
    for (const name of ['api-1', 'api-2']) expect(services[name].command).toEqual(['api']);
    for (const name of ['worker-1', 'worker-2']) expect(services[name].command).toEqual(['worker']);
    for (const name of ['api-1', 'api-2', 'worker-1', 'worker-2']) {
      expect(services[name].volumes).toContain('images:/data/images');
      expect(services[name].environment.STORAGE_DIR).toBe('/data/images');
      expect(services[name].environment.REDIS_URL).toBe('redis://redis:6379');
    }
    const nginx = readFileSync(join(REPO_ROOT, 'docker/nginx.conf'), 'utf8');
    expect(nginx).toContain('server api-1:3000');
    expect(nginx).toContain('server api-2:3000');
  });

  it('names only variables the app reads', () => {
    for (const service of Object.values(services)) {
      if (!['api', 'worker'].includes(service.command?.[0])) continue;
      for (const name of Object.keys(service.environment)) expect(appVariables.has(name) ? name : `unknown variable ${name}`).toBe(name);
    }
  });
});


describe('deploy/compose-sentinel.yml (Sentinel on top of docker-compose.yml)', () => {
  const [base] = read('docker-compose.yml');
  const [overlay] = read('deploy/compose-sentinel.yml');
  const services = overlay.services as Record<string, any>;

  it('points every app at the three sentinels instead of REDIS_URL, with settings the app accepts', () => {
    const apps = Object.keys(base.services).filter((name) => /^(api|worker)-/.test(name));
    for (const name of apps) {
      // Compose merges environment maps: the base's REDIS_URL is emptied (the app reads empty as unset).
      const env = { ...base.services[name].environment, ...services[name].environment };
      expect(env.REDIS_URL).toBe('');
      const variables = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''));
      for (const variable of Object.keys(variables)) expect(appVariables.has(variable) ? variable : `unknown variable ${variable}`).toBe(variable);
      expect(parseEnv(variables as Record<string, string>).REDIS_SENTINELS).toBeDefined();
      const sentinels = String(env.REDIS_SENTINELS).split(',').map((entry) => entry.split(':')[0]);
      expect(sentinels.sort()).toEqual(Object.keys(services).filter((service) => service.startsWith('sentinel-')).sort());
    }
  });

  it('runs a persistent replica of redis and sentinels that monitor redis under REDIS_SENTINEL_MASTER with a quorum of 2', () => {
    const replica = services['redis-replica'].command.join(' ');
    expect(replica).toContain('--replicaof redis 6379');
    expect(replica).toContain('--appendonly yes');
    expect(replica).toContain('--maxmemory-policy noeviction');
    const script = services['sentinel-1'].command.join(' ');
    expect(script).toContain(`sentinel monitor ${services['api-1'].environment.REDIS_SENTINEL_MASTER} redis 6379 2`);
  });
});
describe('deploy/k8s', () => {
  const docs = readdirSync(join(REPO_ROOT, 'deploy/k8s')).flatMap((file) => read(`deploy/k8s/${file}`));
  const byKind = (kind: string) => docs.filter((doc) => doc.kind === kind);
  const deployment = (role: string) => byKind('Deployment').find((doc) => doc.metadata.labels.role === role);

  const service = (name: string) => byKind('Service').find((doc) => doc.metadata.name === name);

  it('has api and worker Deployments, a Service, ConfigMap, Secret, HPA for the API and a KEDA ScaledObject for workers', () => {
    expect(deployment('api')).toBeDefined();
    expect(deployment('worker')).toBeDefined();
    expect(byKind('Service').map((doc) => doc.metadata.name).sort()).toEqual(['image-inference-api', 'redis']);
    expect(byKind('ConfigMap')).toHaveLength(1);
    expect(byKind('Secret')).toHaveLength(1);
    expect(byKind('HorizontalPodAutoscaler')[0].spec.scaleTargetRef.name).toBe(deployment('api').metadata.name);
    expect(byKind('ScaledObject')[0].spec.scaleTargetRef.name).toBe(deployment('worker').metadata.name);
    expect(byKind('ScaledObject')[0].spec.triggers[0].metadata.listName).toBe('{iiq}:inference:wait');
  });

  it('wires ports and probes to the health routes the apps serve', () => {
    const config = byKind('ConfigMap')[0].data;
    for (const [role, port] of [['api', config.PORT], ['worker', config.WORKER_HTTP_PORT]]) {
      const container = deployment(role).spec.template.spec.containers[0];
      expect(container.args).toEqual([role]);
      expect(String(container.ports[0].containerPort)).toBe(port);
      expect(container.readinessProbe.httpGet.path).toBe('/health/ready');
      expect(container.livenessProbe.httpGet.path).toBe('/health/live');
      expect(container.readinessProbe.httpGet.port).toBe(container.ports[0].name);
      expect(container.resources.requests.cpu).toBeDefined();
      expect(container.volumeMounts[0].mountPath).toBe(config.STORAGE_DIR);
    }
    const api = service('image-inference-api');
    expect(api.spec.selector).toEqual(deployment('api').spec.selector.matchLabels);
    expect(api.spec.ports[0].targetPort).toBe('http');
  });

  it('runs Redis as compose does: persistent, capped, noeviction, at the address REDIS_URL names', () => {
    const [redis] = byKind('StatefulSet').filter((doc) => doc.metadata.name === 'redis');
    const args = redis.spec.template.spec.containers[0].args.join(' ');
    expect(args).toContain('--appendonly yes');
    expect(args).toContain('--maxmemory-policy noeviction');
    expect(args).toMatch(/--maxmemory \d+[kmg]b/);
    expect(redis.spec.volumeClaimTemplates[0].metadata.name).toBe(redis.spec.template.spec.containers[0].volumeMounts[0].name);
    const redisService = service('redis');
    expect(redisService.spec.selector).toEqual(redis.spec.selector.matchLabels);
    const url = new URL(byKind('ConfigMap')[0].data.REDIS_URL);
    expect([url.hostname, Number(url.port)]).toEqual([redisService.metadata.name, redisService.spec.ports[0].port]);
    expect(byKind('ScaledObject')[0].spec.triggers[0].metadata.address).toBe(`${redisService.metadata.name}:${redisService.spec.ports[0].port}`);
  });

  it('ConfigMap and Secret name only variables the app reads, with values the app accepts', () => {
    const variables = { ...byKind('ConfigMap')[0].data, ...byKind('Secret')[0].stringData };
    for (const name of Object.keys(variables)) expect(appVariables.has(name) ? name : `unknown variable ${name}`).toBe(name);
    expect(envSchema.safeParse(variables).success).toBe(true);
  });
});
