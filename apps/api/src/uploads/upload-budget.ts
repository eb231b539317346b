import { Inject, Injectable } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { APP_LOGGER } from '@app/logging';
import { ByteBudget, Reservation } from './byte-budget';
import { SLOW_BODY_FINISH_MS, watchBodyRate } from './body-rate';

/**
 * This API process's budget for request bytes held in memory (MAX_UPLOAD_BYTES_IN_FLIGHT), across all requests,
 * each reservation waiting at most UPLOAD_BUDGET_WAIT_MS. While reservations wait, a request whose body is still
 * arriving too slowly to finish within SLOW_BODY_FINISH_MS is answered 408 and closed (watchBodyRate).
 */
@Injectable()
export class UploadBudget extends ByteBudget {
  private readonly held = new WeakMap<FastifyReply, Reservation[]>();

  constructor(
    private readonly config: AppConfig,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {
    super(config.values.MAX_UPLOAD_BYTES_IN_FLIGHT, config.values.UPLOAD_BUDGET_WAIT_MS);
  }

  /**
   * Reserves `bytes` for `holder` until `reply` is sent or its connection ends (one listener per reply), and
   * holds the request's body to the minimum rate while it is still arriving. Returns the reservation (to shrink).
   */
  async holdUntilSent(reply: FastifyReply, bytes: number, holder: string): Promise<Reservation> {
    const reservation = await this.acquire(bytes, holder);
    let reservations = this.held.get(reply);
    if (!reservations) {
      const list: Reservation[] = [];
      this.held.set(reply, (reservations = list));
      reply.raw.once('close', () => list.forEach((each) => each()));
      const env = this.config.values;
      const declared = Number(reply.request.headers['content-length']);
      watchBodyRate(reply.request.raw, {
        expectedBytes: Number.isFinite(declared) && declared > 0 ? declared : bytes,
        contended: () => this.contended,
        finishWithinMs: SLOW_BODY_FINISH_MS,
        graceMs: env.UPLOAD_RATE_GRACE_MS,
        onTooSlow: (received, elapsedMs) =>
          this.logger.warn(
            { action: 'upload.too_slow', requestId: reply.request.id, holder, receivedBytes: received, expectedBytes: declared || bytes, elapsedMs },
            'request body arrives too slowly to finish while other uploads wait for budget: answered 408 and closed',
          ),
      });
    }
    reservations.push(reservation);
    return reservation;
  }
}
