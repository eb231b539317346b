// Parsed where the environment is validated (a bad REDIS_URL stops the process at start, naming the problem).
export { redisOptionsFromUrl } from '@app/config';
