import { fixture } from '../support/fixtures';
import { request } from '../support/http';
import { TestRedis } from '../support/test-redis';
import { TestStack } from '../support/test-stack';

const PASSWORD = 'url-query-secret';

/**
 * REDIS_URL's query options, in ioredis' own URL form, are honoured by every connection of both apps (`?db=4`
 * puts every key in database 4, `?password=` authenticates), and an option the product does not support stops the
 * process at start with a message naming it, instead of being dropped silently.
 */
describe('REDIS_URL query options', () => {
  const stack = new TestStack();
  let redis: TestRedis;

  beforeAll(async () => {
    redis = await stack.startRedis({ args: ['--requirepass', PASSWORD], password: PASSWORD });
  });

  afterAll(() => stack.stop());

  it('?db=4&password=… : both apps authenticate and keep every key in database 4', async () => {
    const env = { REDIS_URL: `redis://127.0.0.1:${redis.port}/?db=4&password=${PASSWORD}` };
    const [api] = await Promise.all([stack.start('api', env), stack.start('worker', env)]);
    const answer = await request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: fixture('castle_image.jpg') });
    expect(answer.status).toBe(200);
    expect((await request(`${api.url}/health/ready`)).status).toBe(200);
    const db0 = stack.client(redis, { password: PASSWORD, db: 0 });
    const db4 = stack.client(redis, { password: PASSWORD, db: 4 });
    expect(await db0.dbsize()).toBe(0);
    expect(await db4.exists(`{iiq}:inference:${answer.body.id}`)).toBe(1);
    expect(await db4.exists('{iiq}:inference:meta', '{iiq}:inference:events', '{iiq:workers}')).toBe(3);
  });

  it('a database the server does not have stops the process, naming it (rather than everything landing in db 0)', async () => {
    for (const [kind, url] of [['api', `redis://127.0.0.1:${redis.port}/99?password=${PASSWORD}`], ['worker', `redis://127.0.0.1:${redis.port}/?db=42&password=${PASSWORD}`]] as const) {
      const app = await stack.spawn(kind, { REDIS_URL: url });
      expect(await app.exitCode()).toBe(1);
      expect(app.logsWith(`${kind}.cannot_start`)[0]?.msg).toMatch(/has no database (99|42)/);
    }
    expect(await stack.client(redis, { password: PASSWORD, db: 0 }).dbsize()).toBe(0);
  });

  it('an option it does not support stops the process, naming the option', async () => {
    for (const kind of ['api', 'worker'] as const) {
      const app = await stack.spawn(kind, { REDIS_URL: `redis://127.0.0.1:${redis.port}/?password=${PASSWORD}&connectTimeout=50` });
      expect(await app.exitCode()).toBe(2);
      const invalid = app.logsWith('config.invalid')[0];
      expect(invalid?.msg).toMatch(/REDIS_URL[\s\S]*"connectTimeout" is not supported/);
    }
  });
});
