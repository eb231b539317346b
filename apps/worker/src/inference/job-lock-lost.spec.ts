import { jobLockLost, lockLostJobId } from './job-lock-lost';

/** As BullMQ 6's finishedErrors builds them: the message and the script's numeric code. */
const finished = (message: string, code: number) => Object.assign(new Error(message), { code });

describe('jobLockLost', () => {
  it.each([
    // Seen in the redis-outage-logs fault test: a frozen Redis (locks expired meanwhile)...
    ['could not renew lock for job 6f1c…', undefined],
    ['Missing lock for job 6f1c. moveToFinished', -2],
    ['Missing lock for job 6f1c. moveToDelayed', -2],
    // ...and a Redis restarted without its data.
    ['Missing key for job 6f1c. moveToFinished', -1],
    ['Missing key for job 6f1c. moveToDelayed', -1],
    ['Lock mismatch for job 6f1c. Cmd moveToFinished from active', -6],
  ])('%s', (message, code) => {
    expect(jobLockLost(code === undefined ? new Error(message) : finished(message, code))).toBe(true);
  });

  it('leaves other errors alone', () => {
    expect(jobLockLost(finished('Job 6f1c has pending dependencies. moveToFinished', -4))).toBe(false);
    expect(jobLockLost(finished('Missing key for parent job q:1. moveToFinished', -5))).toBe(false);
    expect(jobLockLost(new Error('Missing key for job 6f1c. moveToFinished'))).toBe(false); // not BullMQ's (no code)
    expect(jobLockLost(finished('could not renew lock for job 6f1c', -2))).toBe(false);
    expect(jobLockLost(new Error('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBe(false);
    expect(jobLockLost('Missing lock for job 1')).toBe(false);
  });
});

describe('lockLostJobId', () => {
  it('names the job whose end BullMQ refused to record', () => {
    expect(lockLostJobId(finished('Missing lock for job an-3f9a. moveToFinished', -2))).toBe('an-3f9a');
    expect(lockLostJobId(finished('Lock mismatch for job 6f1c-77. Cmd moveToFinished from active', -6))).toBe('6f1c-77');
  });

  it('names none for a lock renewal (BullMQ reports those by event) or another error', () => {
    expect(lockLostJobId(new Error('could not renew lock for job 6f1c'))).toBeUndefined();
    expect(lockLostJobId(finished('Job 6f1c has pending dependencies. moveToFinished', -4))).toBeUndefined();
  });
});
