/**
 * When each message of a replay is due. Closed loop (default): at once, so each session sends its next message
 * as soon as the last one finished. Open loop (--rate R): message k is due at start + k/R; a session that picks
 * it up late sends at once, and its latency is measured from the due time, so a slow server shows up as latency
 * instead of silently lowering the rate (no coordinated omission). --timing original: transcripts are due at
 * their recorded times, the gaps divided by --speed.
 */
import {performance} from 'node:perf_hooks'
import type {ReplayItem} from './item.js'

/** How messages are scheduled. */
export type ScheduleMode = 'closed-loop' | 'open-loop' | 'original-timing'

/** Options of a scheduler. */
export interface ScheduleOptions {
  /** Open loop: messages per second. */
  rate?: number
  /** Replay transcripts at their recorded times. */
  originalTiming?: boolean
  /** With originalTiming: play this many times faster (default 1). */
  speed?: number
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const t = setTimeout(done, Math.max(1, Math.ceil(ms)))
    function done(): void {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, {once: true})
  })
}

/** Due times of a run's messages (performance.now() milliseconds). */
export class Scheduler {
  /** When the run started. */
  readonly start = performance.now()
  private firstAt: number | undefined

  constructor(private readonly o: ScheduleOptions) {}

  /** The mode, for the summary. */
  get mode(): ScheduleMode {
    return this.o.rate ? 'open-loop' : this.o.originalTiming ? 'original-timing' : 'closed-loop'
  }

  /** When message number `seq` (in take order) is due. */
  dueAt(item: ReplayItem, seq: number): number {
    if (this.o.rate) return this.start + (seq * 1000) / this.o.rate
    if (this.o.originalTiming && item.at !== undefined) {
      this.firstAt ??= item.at
      return this.start + (item.at - this.firstAt) / (this.o.speed ?? 1)
    }
    return performance.now()
  }

  /** Waits until `due` has passed (timers may fire a little early), or the signal aborts. */
  async waitUntil(due: number, signal?: AbortSignal): Promise<void> {
    for (let wait = due - performance.now(); wait > 0 && !signal?.aborted; wait = due - performance.now()) await sleep(wait, signal)
  }
}
