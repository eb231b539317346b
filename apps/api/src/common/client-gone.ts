import type { FastifyReply } from 'fastify';

/**
 * An AbortSignal that fires when the client's connection closes before its answer was sent (Node emits the
 * response's 'close' both after a sent answer and when the connection goes first).
 */
export function clientGoneSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => reply.raw.writableFinished || controller.abort());
  return controller.signal;
}

/** The status logged for an answer nobody received (nginx's "client closed request"); it is never sent. */
export const CLIENT_CLOSED_REQUEST = 499;
