import { Injectable } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { AppConfig } from '@app/config';
import { ByteBudget } from './byte-budget';

/**
 * This API process's budget for request bytes held in memory (MAX_UPLOAD_BYTES_IN_FLIGHT), across all requests,
 * each reservation waiting at most UPLOAD_BUDGET_WAIT_MS.
 */
@Injectable()
export class UploadBudget extends ByteBudget {
  private readonly held = new WeakMap<FastifyReply, (() => void)[]>();

  constructor(config: AppConfig) {
    super(config.values.MAX_UPLOAD_BYTES_IN_FLIGHT, config.values.UPLOAD_BUDGET_WAIT_MS);
  }

  /** Reserves `bytes` for `holder` until `reply` is sent or its connection ends (one listener per reply). */
  async holdUntilSent(reply: FastifyReply, bytes: number, holder: string): Promise<void> {
    const release = await this.acquire(bytes, holder);
    let releases = this.held.get(reply);
    if (!releases) {
      const list: (() => void)[] = [];
      this.held.set(reply, (releases = list));
      reply.raw.once('close', () => list.forEach((each) => each()));
    }
    releases.push(release);
  }
}
