import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import type Redis from 'ioredis';
import { answerWithin, RedisConnection } from '@app/redis';

type Listener = (model: string) => void;

/**
 * Longest a new follower waits for its SUBSCRIBE (ms). The subscriber connection has no command timeout (it
 * holds subscriptions, not replies): a Redis frozen while SUBSCRIBE was in flight held the event stream, its
 * tenant's stream slot and the request until Redis came back (red-team: SIGSTOP right after the stream opened).
 * Past it the follower goes on: it polls every second anyway, and its next read meets REDIS_COMMAND_TIMEOUT_MS.
 */
const SUBSCRIBE_WAIT_MS = 1000;

/**
 * One Redis subscriber connection for every SSE client: channels are subscribed while someone listens.
 * Pub/sub is fire-and-forget, so followers also poll (see ImagesService.follow).
 */
@Injectable()
export class ImageEventsHub implements OnApplicationShutdown {
  private subscriber?: Redis;
  private readonly listeners = new Map<string, Set<Listener>>();

  constructor(private readonly redis: RedisConnection) {}

  private connection(): Redis {
    if (!this.subscriber) {
      // Its own connection (a Cluster's too: classic pub/sub reaches every node), queueing SUBSCRIBE while it connects.
      this.subscriber = this.redis.client({ maxRetriesPerRequest: 1, enableOfflineQueue: true });
      this.subscriber.on('message', (channel: string, model: string) => this.listeners.get(channel)?.forEach((listener) => listener(model)));
      this.subscriber.on('error', () => undefined); // reconnects by itself; followers poll meanwhile
    }
    return this.subscriber;
  }

  async listen(channel: string, listener: Listener): Promise<() => void> {
    let set = this.listeners.get(channel);
    if (!set) {
      this.listeners.set(channel, (set = new Set()));
      await answerWithin(this.connection().subscribe(channel), SUBSCRIBE_WAIT_MS).catch(() => undefined);
    }
    set.add(listener);
    return () => {
      set!.delete(listener);
      if (set!.size === 0) {
        this.listeners.delete(channel);
        void this.subscriber?.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  async onApplicationShutdown(): Promise<void> {
    this.subscriber?.disconnect();
  }
}
