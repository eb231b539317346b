export * from './redis-connection';
export * from './redis-options';
export * from './redis.module';
export * from './bull-connection';
export * from './redis-probe';
export * from './eviction-policy';
export * from './try-later';
export * from './worker-registry';
