import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import type Redis from 'ioredis';
import { RedisConnection } from '@app/redis';

type Listener = (model: string) => void;

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
      await this.connection().subscribe(channel);
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
