export * from './queues';
export * from './errors';
export * from './jobs';
export * from './redis-keys';
export * from './image-limits';
export * from './tenant';
