import { createConnection, createServer, Server, Socket } from 'node:net';
import { freePort } from './free-port';

/**
 * A TCP proxy on loopback in front of a Redis that can go silent without closing anything, as a dropped NAT or
 * load-balancer entry does: freeze() stops passing bytes on every connection that has sent a blocking BZPOPMIN
 * (a BullMQ worker's fetch connection) and on every connection opened from then on; the sockets stay open, so
 * the client sees no error, only no answers. thaw() passes new connections again (frozen ones stay silent).
 */
export class FreezingProxy {
  private frozen = false;
  private readonly sockets = new Set<Socket>();
  private readonly blocking = new Set<{ client: Socket; silent: boolean }>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(targetPort: number): Promise<FreezingProxy> {
    const port = await freePort();
    let proxy: FreezingProxy | undefined = undefined;
    const server = createServer((client) => proxy!.pipe(client, targetPort));
    proxy = new FreezingProxy(server, port);
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
    return proxy;
  }

  private pipe(client: Socket, targetPort: number): void {
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    const link = { client, silent: this.frozen };
    this.sockets.add(client).add(upstream);
    client.on('data', (chunk) => {
      if (!link.silent && /bzpopmin/i.test(chunk.toString('latin1'))) this.blocking.add(link);
      if (!link.silent) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => !link.silent && client.write(chunk));
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
      this.blocking.delete(link);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  }

  freeze(): void {
    this.frozen = true;
    for (const link of this.blocking) link.silent = true;
  }

  thaw(): void {
    this.frozen = false;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
