import Ajv from 'ajv';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { multipart, postImage, request, HttpResult } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';

type Operation = { responses: Record<string, { content?: Record<string, { schema?: object }> }>; parameters?: { name: string; in: string }[] };
type Document = { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, object> } };

/** Every `$ref` anywhere in the document. */
function refsIn(value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((item) => refsIn(item, found));
  else if (value && typeof value === 'object') {
    for (const [key, child] of Object.entries(value)) {
      if (key === '$ref' && typeof child === 'string') found.push(child);
      else refsIn(child, found);
    }
  }
  return found;
}

/**
 * The OpenAPI document as a contract a client can trust: every route the server answers is in it (and nothing
 * else is), every reference resolves, and real answers of real calls validate against the schema the document
 * gives for their status (a client-side check generated from the document with Ajv).
 */
describe('OpenAPI document: a contract tools can trust', () => {
  let redis: TestRedis;
  let api: AppProcess;
  let worker: AppProcess;
  let document: Document;
  let ajv: Ajv;

  beforeAll(async () => {
    redis = await TestRedis.start();
    [api, worker] = await Promise.all([AppProcess.start('api', { REDIS_URL: redis.url, ADMIN_PASSWORD: 'admin-pass' }), AppProcess.start('worker', { REDIS_URL: redis.url, ORT_INTRA_OP_THREADS: '1' })]);
    document = (await request(`${api.url}/docs/json`)).body;
    ajv = new Ajv({ strict: false, allErrors: true });
    // OpenAPI 3.0 schemas are JSON Schema with `nullable` (Ajv knows it) and OpenAPI's own formats.
    ajv.addFormat('binary', true).addFormat('byte', true).addFormat('date-time', true);
    ajv.addSchema({ $id: 'openapi', components: document.components });
  });

  afterAll(async () => {
    await Promise.all([api, worker].map((app) => app?.stop()));
    await redis?.stop();
  });

  it('Swagger UI answers at /docs, and /docs/ (whose relative asset links 404) sends there', async () => {
    expect((await request(`${api.url}/docs`)).status).toBe(200);
    const slash = await fetch(`${api.url}/docs/?x=1`, { redirect: 'manual' });
    expect([slash.status, slash.headers.get('location')]).toEqual([301, '/docs?x=1']);
  });

  it('every route the server answers is documented, and every documented operation is served', async () => {
    const served = (api.logsWith('api.routes')[0].routes as string[])
      // Not API operations: the web page's static files, Swagger UI itself, the admin dashboard.
      .filter((route) => !/ \/(docs|admin)\b/.test(route) && !/^GET \/([\w.-]+\.(html|js|css)|\*|)$/.test(route) && !route.startsWith('OPTIONS '))
      .map((route) => route.replace(/:(\w+)/g, '{$1}'))
      .sort();
    const documented = Object.entries(document.paths)
      .flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`))
      .sort();
    expect(served).toEqual(documented);
  });

  it('every reference resolves, every operation states its security and a 2xx answer', () => {
    for (const ref of refsIn(document)) {
      const name = ref.replace('#/components/schemas/', '');
      expect([ref, name in document.components.schemas]).toEqual([ref, true]);
    }
    const { security } = document as unknown as { security: unknown[] };
    expect(security).toEqual([{ 'api-key': [] }, { bearer: [] }]);
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        expect([method, path, Object.keys(operation.responses).some((status) => status.startsWith('2'))]).toEqual([method, path, true]);
      }
    }
  });

  it('real answers validate against the schema the document gives for their status', async () => {
    const check = (method: string, path: string, answer: HttpResult) => {
      const response = document.paths[path]?.[method]?.responses[String(answer.status)];
      expect([method, path, answer.status, response !== undefined]).toEqual([method, path, answer.status, true]);
      const schema = response!.content?.['application/json']?.schema;
      if (!schema) return;
      const validate = ajv.compile(JSON.parse(JSON.stringify(schema).replace(/"#\/components/g, '"openapi#/components')));
      expect([method, path, answer.status, validate(answer.body) ? 'valid' : ajv.errorsText(validate.errors)]).toEqual([method, path, answer.status, 'valid']);
    };
    const castle = fixture('castle_image.jpg');
    const classified = await postImage(`${api.url}/v1/classify?topk=3`, castle);
    check('post', '/v1/classify', classified);
    check('post', '/v1/classify', await postImage(`${api.url}/v1/classify?model=resnet`, castle));
    check('post', '/v1/classify', await postImage(`${api.url}/v1/classify`, Buffer.from('text, not an image')));
    check('post', '/predict', await postImage(`${api.url}/predict`, castle));
    check('post', '/predict', await postImage(`${api.url}/predict`, Buffer.from('text, not an image')));
    check('get', '/v1/jobs/{id}', await request(`${api.url}/v1/jobs/${classified.body.id}`));
    check('get', '/v1/jobs/{id}', await request(`${api.url}/v1/jobs/no-such-job`));
    check('get', '/v1/models', await request(`${api.url}/v1/models`));
    const form = multipart({ models: 'mobilenet_v2,yunet' });
    form.append('images', new Blob([fixture('face_obama_1.jpg')]), 'obama.jpg');
    const submitted = await request(`${api.url}/v1/analyses`, { method: 'POST', body: form });
    check('post', '/v1/analyses', submitted);
    const hash = submitted.body.images[0].hash;
    await until(async () => (await request(`${api.url}/v1/images/${hash}/results/yunet`)).status === 200, 30_000, 'the analysis');
    check('get', '/v1/images/{hash}', await request(`${api.url}/v1/images/${hash}`));
    check('get', '/v1/images/{hash}/results/{model}', await request(`${api.url}/v1/images/${hash}/results/yunet`));
    check('get', '/v1/images/{hash}/results/{model}', await request(`${api.url}/v1/images/${hash}/results/mobilefacenet`));
    check('post', '/v1/faces', await postImage(`${api.url}/v1/faces`, fixture('face_obama_2.jpg')));
    check('get', '/v1/images/{hash}/matches', await request(`${api.url}/v1/images/${hash}/matches`));
    check('delete', '/v1/images/{hash}/faces', await request(`${api.url}/v1/images/${hash}/faces`, { method: 'DELETE' }));
    check('delete', '/v1/images/{hash}', await request(`${api.url}/v1/images/${hash}`, { method: 'DELETE' }));
    check('get', '/v1/images/{hash}', await request(`${api.url}/v1/images/${hash}`));
    check('get', '/v1/images/{hash}', await request(`${api.url}/v1/images/not-a-hash`));
    check('get', '/health/live', await request(`${api.url}/health/live`));
  });
});
