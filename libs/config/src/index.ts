export * from './env.schema';
export * from './app-config';
export * from './app-config.module';
export * from './api-keys';
export * from './redis-url';
export * from './http-limits';
export * from './listen-check';
export * from './redis-topology';
