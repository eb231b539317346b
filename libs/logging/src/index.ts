export * from './create-logger';
export * from './logging.module';
export * from './nest-pino-logger';
export * from './graceful-shutdown';
export * from './log-throttle';
