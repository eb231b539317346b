import { hostname } from 'node:os';

/** host:pid, unique among the workers sharing one Redis. */
export const workerId = `${hostname()}:${process.pid}`;
