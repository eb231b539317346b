import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { holdConnection, multipart, request } from '../support/http';
import { TestStack } from '../support/test-stack';

const HEADERS_MS = 1000;
const REQUEST_MS = 3000;
const IDLE_MS = 1500;
const KEEP_ALIVE_MS = 1000;
/** Longer than every limit above: a request still open this long was not cut. */
const WAIT_MS = 5000;
/** Far past every limit (and Node's 30 s checking interval would not reach it either): where a hold without limits is given up. */
const GIVE_UP_MS = 12_000;

/**
 * HTTP time limits with small values, against the real API (no worker: nothing answers a job). Slow and silent
 * clients are cut off by the limit that applies to them (408 or a close); a request that was received whole and
 * waits for its job, and an event stream, are not cut by the idle limit however long they wait.
 */
describe('HTTP time limits', () => {
  const stack = new TestStack();
  let api: AppProcess;

  beforeAll(async () => {
    await stack.startRedis();
    api = await stack.start('api', {
      HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
      HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_MS),
      HTTP_IDLE_TIMEOUT_MS: String(IDLE_MS),
      HTTP_KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_MS),
      UPLOAD_BUDGET_WAIT_MS: '1000',
      REQUEST_WAIT_MS: String(WAIT_MS),
      SSE_MAX_MS: String(WAIT_MS),
    });
  });

  afterAll(() => stack.stop());

  const head = (lines: string[]) => `${lines.join('\r\n')}\r\n`;

  it('cuts slow and silent clients, each by the limit that applies, and keeps requests that are being answered', async () => {
    const port = api.port!;
    const body = fixture('castle_image.jpg');
    const [slowHead, slowBody, silentBody, silentConnection, keepAlive, waiting, stream] = await Promise.all([
      // Slow-loris on the head: one header byte every 200 ms, never finishing it.
      holdConnection(port, head(['POST /v1/classify HTTP/1.1', 'Host: 127.0.0.1']), { drip: Buffer.from('X-Padding: ' + 'a'.repeat(200)), everyMs: 200, maxMs: GIVE_UP_MS }),
      // Slow-loris on the body: one byte every 200 ms (never silent for the idle limit), never finishing it.
      holdConnection(port, `${head(['POST /v1/classify HTTP/1.1', 'Host: 127.0.0.1', 'Content-Type: image/jpeg', `Content-Length: ${body.length}`])}\r\n`, { drip: body, everyMs: 200, maxMs: GIVE_UP_MS }),
      // 100 bytes of a body, then silence.
      holdConnection(port, Buffer.concat([Buffer.from(`${head(['POST /v1/classify HTTP/1.1', 'Host: 127.0.0.1', 'Content-Type: image/jpeg', `Content-Length: ${body.length}`])}\r\n`), body.subarray(0, 100)]), { maxMs: GIVE_UP_MS }),
      // Connects and sends nothing at all.
      holdConnection(port, '', { maxMs: GIVE_UP_MS }),
      // One request on a keep-alive connection, then nothing.
      holdConnection(port, `${head(['GET /health/live HTTP/1.1', 'Host: 127.0.0.1', 'Connection: keep-alive'])}\r\n`, { maxMs: GIVE_UP_MS }),
      // A whole request waiting for its job (no worker runs): answered 202 at REQUEST_WAIT_MS, never cut by the idle limit.
      request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body }).then((answer) => ({ ...answer, ms: 0 })),
      // An event stream of an image whose analysis never finishes (no worker): ends at SSE_MAX_MS with `timeout`, not cut when idle.
      (async () => {
        const form = multipart({ models: 'mobilenet_v2' });
        form.append('images', new Blob([body]), 'castle_image.jpg');
        const submitted = await request(`${api.url}/v1/analyses`, { method: 'POST', body: form });
        const started = Date.now();
        const events = await fetch(`${api.url}/v1/images/${submitted.body.images[0].hash}/events`);
        return { text: await events.text(), ms: Date.now() - started };
      })(),
    ]);

    // Node answers 408 when the head or the whole request takes too long (checked every tenth of the limit).
    expect(slowHead.status).toBe(408);
    expect(slowHead.closedByServerAfterMs).toBeLessThan(HEADERS_MS + 3000);
    expect(slowBody.status).toBe(408);
    expect(slowBody.closedByServerAfterMs).toBeGreaterThanOrEqual(REQUEST_MS);
    expect(slowBody.closedByServerAfterMs).toBeLessThan(REQUEST_MS + 3000);
    // Silence while the client owes bytes, or before it sent anything: closed at the idle limit.
    expect(silentBody.closedByServerAfterMs).toBeGreaterThanOrEqual(IDLE_MS - 100);
    expect(silentBody.closedByServerAfterMs).toBeLessThan(IDLE_MS + 3000);
    expect(silentConnection.closedByServerAfterMs).toBeLessThan(IDLE_MS + 3000);
    // An idle keep-alive connection: answered, then closed after the keep-alive limit (Node adds 1 s to what it advertises).
    expect(keepAlive.status).toBe(200);
    expect(keepAlive.received).toMatch(/keep-alive: timeout=1/i);
    expect(keepAlive.closedByServerAfterMs).toBeLessThan(KEEP_ALIVE_MS + 1000 + 3000);
    // Being answered is not idle.
    expect(waiting.status).toBe(202);
    expect(stream.text).toContain('event: timeout');
    expect(stream.ms).toBeGreaterThanOrEqual(WAIT_MS - 200);
    expect(api.exited).toBe(false);
    console.log(
      `HTTP limits: slow head 408 after ${slowHead.closedByServerAfterMs} ms (limit ${HEADERS_MS}), slow body 408 after ${slowBody.closedByServerAfterMs} ms (limit ${REQUEST_MS}), ` +
        `silent body closed after ${silentBody.closedByServerAfterMs} ms, silent connection after ${silentConnection.closedByServerAfterMs} ms (idle ${IDLE_MS}), keep-alive closed after ${keepAlive.closedByServerAfterMs} ms (${KEEP_ALIVE_MS}); ` +
        `a request waiting ${WAIT_MS} ms for its job answered 202, an event stream ran its ${stream.ms} ms`,
    );
  });

  it('slow bodies holding the upload budget are cut while others wait for it, a slow body alone is not, and a waiting upload holds only its own size', async () => {
    // Red-team: two keys each declaring a 32 MiB JSON body (half the 64 MiB budget each) held every image upload of
    // every tenant to 503 until HTTP_REQUEST_TIMEOUT_MS (300 s by default): by sending a byte every 500 ms, and
    // (against a fixed minimum rate tried first) by sending 67 KB/s, a rate at which 32 MiB takes 500 s.
    const keys = { mallory: 'mallory-key', bob: 'bob-key', alice: 'alice-key', carol: 'carol-key' };
    const guarded = await stack.start('api', {
      API_KEYS: `mallory:${keys.mallory},bob:${keys.bob},alice:${keys.alice},carol:${keys.carol}`,
      RATE_LIMIT_MAX: '0',
      UPLOAD_RATE_GRACE_MS: '1000',
      UPLOAD_BUDGET_WAIT_MS: '4000',
      // Longer than the budget wait: an upload that had to wait for others' answers would be refused.
      REQUEST_WAIT_MS: '5000',
    });
    try {
      const jsonHead = (key: string, length: number) => `${head(['POST /v1/classify HTTP/1.1', 'Host: 127.0.0.1', 'Content-Type: application/json', `X-Api-Key: ${key}`, `Content-Length: ${length}`])}\r\n`;
      const big = Buffer.from('{"image":"' + 'A'.repeat(2_000_000));
      // Alone, a slow body is not cut: 120 KB at 24 KB/s (5 s) while nobody waits for budget is answered (202: no worker).
      const photo = fixture('castle_image.jpg').toString('base64');
      const slowAlone = Buffer.from(JSON.stringify({ image: photo + '='.repeat((4 - (photo.length % 4)) % 4) }));
      const alone = await holdConnection(guarded.port!, jsonHead(keys.carol, slowAlone.length), { drip: slowAlone, everyMs: 100, chunkBytes: Math.ceil(slowAlone.length / 50), maxMs: GIVE_UP_MS });
      expect(alone.status).toBe(202);

      // Two attackers fill the budget (32 MiB each); eight uploads of another tenant then wait for room. An attacker
      // is cut once others wait and it cannot finish within 60 s (SLOW_BODY_FINISH_MS); cutting one already makes room,
      // so the other may go on while nobody waits (it ends at ATTACK_MS here, at HTTP_REQUEST_TIMEOUT_MS in life).
      const ATTACK_MS = 7000;
      const body = fixture('castle_image.jpg');
      const phase = async (drip: { everyMs: number; chunkBytes: number }) => {
        const attackers = [keys.mallory, keys.bob].map((key) => holdConnection(guarded.port!, jsonHead(key, 32 * 1024 * 1024), { drip: big, ...drip, maxMs: ATTACK_MS }));
        await new Promise((resolve) => setTimeout(resolve, 300));
        const started = Date.now();
        // No worker: an upload that gets its budget waits REQUEST_WAIT_MS and is answered 202; one that does not, 503.
        const uploads = await Promise.all(
          Array.from({ length: 8 }, () => request(`${guarded.url}/v1/classify`, { method: 'POST', headers: { 'x-api-key': keys.alice }, body: multipart({ image: { bytes: body, filename: 'castle.jpg' } }) })),
        );
        const answeredMs = Date.now() - started;
        const cut = (await Promise.all(attackers)).filter((attacker) => attacker.status === 408);
        // Eight multipart uploads of one tenant waiting at once: each holds its 70 KB, not MAX_IMAGE_BYTES (10 MiB),
        // so none is refused for want of budget (before, 3 of one holder's 10 MiB reservations filled its half).
        expect(uploads.map((answer) => answer.status)).toEqual(Array(8).fill(202));
        expect(cut.length).toBeGreaterThanOrEqual(1);
        expect(cut[0].closedByServerAfterMs).toBeLessThan(1000 + 3000);
        return `${cut.length} cut after ${cut.map((attacker) => attacker.closedByServerAfterMs).join(' / ')} ms, uploads answered within ${answeredMs} ms`;
      };
      const byteNowAndThen = await phase({ everyMs: 500, chunkBytes: 1 });
      const justAboveAFixedRate = await phase({ everyMs: 100, chunkBytes: 8000 }); // 80 KB/s: 32 MiB in 420 s
      expect(guarded.logsWith('upload.too_slow').length).toBeGreaterThanOrEqual(2);
      console.log(`slow bodies: a byte every 500 ms: ${byteNowAndThen}; 80 KB/s: ${justAboveAFixedRate}; a slow body alone answered ${alone.status}`);
    } finally {
      await guarded.stop();
    }
  });

  it('refuses limits that contradict each other, naming them', async () => {
    for (const [env, name] of [
      [{ HTTP_HEADERS_TIMEOUT_MS: '5000', HTTP_REQUEST_TIMEOUT_MS: '2000' }, 'HTTP_HEADERS_TIMEOUT_MS'],
      [{ HTTP_IDLE_TIMEOUT_MS: '5000', UPLOAD_BUDGET_WAIT_MS: '10000' }, 'HTTP_IDLE_TIMEOUT_MS'],
    ] as const) {
      const app = await stack.spawn('api', env);
      expect(await app.exitCode()).toBe(2);
      expect(JSON.stringify(app.logsWith('config.invalid'))).toContain(name);
    }
  });
});
