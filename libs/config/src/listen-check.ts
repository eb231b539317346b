import { createServer } from 'node:net';

/**
 * Undefined when `host:port` can be listened on now, else one sentence naming the address, the variable
 * that sets it and the fix. Checked before the app starts, so a taken port is reported before any "started"
 * line (the app's own listen stays authoritative: another process may still take the port in between).
 */
export async function listenProblem(variable: string, host: string, port: number): Promise<string | undefined> {
  if (port === 0) return undefined;
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (error: NodeJS.ErrnoException) =>
      resolve(
        error.code === 'EADDRINUSE'
          ? `port ${port} on ${host} is already in use: stop what listens there, or set ${variable} to a free port`
          : `cannot listen on ${host}:${port} (${error.code ?? error.message}): set ${variable} (and HOST) to an address this machine can listen on`,
      ),
    );
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}
