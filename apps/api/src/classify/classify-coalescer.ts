import { randomUUID } from 'node:crypto';

export interface CoalescerOptions {
  /** Most requests in one group (1: every request is its own group, sent at once). */
  max: number;
  /** A model's unanswered jobs from this coalescer below which a request is sent at once, alone. */
  inFlightLimit: number;
  /** Longest a pending group waits for company after its first request (ms). */
  delayMs: number;
}

/** Sends one group as one queue job: `jobId` is the group's id; a group of one is a plain single job. */
export type SendGroup<T> = (model: string, jobId: string, items: T[]) => Promise<void>;

/** Removes the job of a group of several whose every client hung up; true when it was removed (no worker held it). */
export type DropGroup = (model: string, jobId: string, size: number) => Promise<boolean>;

/** One request's place in a group. */
export interface CoalescedTicket {
  /** The queue job's id (a UUID), known from the start so the request can wait on it before it is sent. */
  jobId: string;
  /** Its index in the group's items. */
  index: number;
  /** Resolves with the group's size once its job is added; rejects with the send's error. */
  sent: Promise<number>;
  /**
   * The request waits no more for the job (answered, timed out, gone; `abandoned`: its client hung up): once every
   * member has, the job leaves the model's in-flight count.
   */
  release(abandoned?: boolean): void;
  /**
   * Settles once every member released: true when the group had several members, every one of them abandoned,
   * and its job was removed before a worker took it; false otherwise (its items run, unread).
   */
  dropped: Promise<boolean>;
}

interface Group<T> {
  jobId: string;
  model: string;
  items: T[];
  /** Members not yet released. */
  holders: number;
  sent?: Promise<number>;
  resolveSent: (size: number) => void;
  rejectSent: (error: unknown) => void;
  timer?: NodeJS.Timeout;
  /** Counted in the model's in-flight jobs (from its send until every member released it). */
  inFlight: boolean;
  /** Members released as abandoned. */
  abandoned: number;
  dropped: Promise<boolean>;
  settleDropped: (dropped: boolean) => void;
}

/**
 * Coalesces concurrent classify requests for one model into one queue job, so that what BullMQ costs per job
 * (its scripts, events and round trips) is paid once for several images. A request that finds fewer than
 * `inFlightLimit` jobs of its model in flight from here is sent at once as a group of one: alone, or under light
 * load, nothing changes and nothing waits. Otherwise it joins the model's pending group, which is sent when it holds
 * `max` requests, when an earlier job of the model is answered (its count drops below the limit), or `delayMs` after
 * its first request, whichever comes first.
 */
export class ClassifyCoalescer<T> {
  private readonly pending = new Map<string, Group<T>>();
  private readonly inFlight = new Map<string, number>();

  constructor(
    private readonly send: SendGroup<T>,
    private readonly options: CoalescerOptions,
    /** Called with each group's size as it is sent (a metric). */
    private readonly onSend: (model: string, size: number) => void = () => undefined,
    private readonly drop: DropGroup = async () => false,
  ) {}

  /** Jobs of the model sent from here whose requests still wait (for tests and metrics). */
  inFlightOf(model: string): number {
    return this.inFlight.get(model) ?? 0;
  }

  join(model: string, item: T): CoalescedTicket {
    let group = this.pending.get(model);
    if (!group) {
      group = this.newGroup(model);
      if (this.options.max > 1 && this.inFlightOf(model) >= this.options.inFlightLimit) {
        this.pending.set(model, group);
        const waiting = group;
        waiting.timer = setTimeout(() => this.flush(waiting), this.options.delayMs);
        waiting.timer.unref();
      }
    }
    const index = group.items.push(item) - 1;
    group.holders++;
    const sent = (group.sent ??= new Promise<number>((resolve, reject) => {
      group.resolveSent = resolve;
      group.rejectSent = reject;
    }));
    if (this.pending.get(model) !== group || group.items.length >= this.options.max) this.flush(group);
    let released = false;
    const owner = group;
    return {
      jobId: group.jobId,
      index,
      sent,
      dropped: owner.dropped,
      release: (abandoned = false) => {
        if (released) return;
        released = true;
        if (abandoned) owner.abandoned++;
        if (--owner.holders === 0) this.finished(owner);
      },
    };
  }

  private newGroup(model: string): Group<T> {
    let settleDropped: (dropped: boolean) => void = () => undefined;
    const dropped = new Promise<boolean>((resolve) => (settleDropped = resolve));
    return { jobId: randomUUID(), model, items: [], holders: 0, resolveSent: () => undefined, rejectSent: () => undefined, inFlight: false, abandoned: 0, dropped, settleDropped };
  }

  private flush(group: Group<T>): void {
    clearTimeout(group.timer);
    if (this.pending.get(group.model) === group) this.pending.delete(group.model);
    group.inFlight = true;
    this.inFlight.set(group.model, this.inFlightOf(group.model) + 1);
    this.onSend(group.model, group.items.length);
    const size = group.items.length;
    this.send(group.model, group.jobId, group.items).then(
      () => group.resolveSent(size),
      (error) => group.rejectSent(error),
    );
  }

  /** Every member of a sent group stopped waiting: one job fewer in flight, and a pending group may go now. */
  private finished(group: Group<T>): void {
    if (!group.inFlight) return;
    group.inFlight = false;
    if (group.items.length > 1 && group.abandoned === group.items.length) {
      this.drop(group.model, group.jobId, group.items.length).then(group.settleDropped, () => group.settleDropped(false));
    } else group.settleDropped(false);
    const count = this.inFlightOf(group.model) - 1;
    if (count > 0) this.inFlight.set(group.model, count);
    else this.inFlight.delete(group.model);
    const next = this.pending.get(group.model);
    if (next && count < this.options.inFlightLimit) this.flush(next);
  }
}
