export * from './redis-options';
export * from './redis.module';
export * from './bull-connection';
export * from './redis-probe';
