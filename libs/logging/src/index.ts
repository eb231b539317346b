export * from './create-logger';
export * from './logging.module';
