/**
 * The item feed between the sources and the workers: a background pump reads ahead a few items (so scanning a
 * directory or an mbox overlaps with sending), counts problems and ignored files, and applies --count,
 * --duration and --loop. Workers take items one at a time; each gets a sequence number in take order.
 */
import type {InputProblem, ReplayItem, SourceEntry} from './item.js'

/** Options of a feed. */
export interface FeedOptions {
  /** Makes a fresh pass over the sources (called again for --loop). */
  open: () => AsyncIterable<SourceEntry>
  /** Stop after this many items. */
  count?: number
  /** Stop handing out items at this time (ms since the epoch). */
  deadline?: number
  /** Repeat the sources until count/deadline/stop. */
  loop?: boolean
  /** Items read ahead (default 64). */
  readAhead?: number
  /** Problems kept in detail (the rest are only counted; default 100). */
  keepProblems?: number
  /** Called with every problem as it is found. */
  onProblem?: (p: InputProblem) => void
}

/** An item handed to a worker. */
export interface FeedTicket {
  item: ReplayItem
  /** 0-based position in take order. */
  seq: number
}

/** Pulls items from the sources ahead of the workers. */
export class ItemFeed {
  /** Items read from the sources (including ones later skipped when opened). */
  read = 0
  /** Items handed out. */
  taken = 0
  /** Problems found while reading (and items found unusable when opened). */
  problemCount = 0
  /** Of those, items that never carried mail to send (InputProblem.notMail). */
  notMailCount = 0
  /** The first problems, in detail. */
  readonly problems: InputProblem[] = []
  /** Files ignored (not a message kind replay reads). */
  ignored = 0
  /** True once the sources are exhausted (or a limit was reached). */
  done = false
  /** Total items, once known (sources exhausted, or --count). */
  total: number | undefined
  private readonly queue: ReplayItem[] = []
  private readonly waiters: (() => void)[] = []
  private space: (() => void) | undefined
  private stopped = false
  private pumping: Promise<void> | undefined

  constructor(private readonly o: FeedOptions) {
    this.total = o.count
  }

  /** Starts reading ahead. */
  start(): void {
    this.pumping ??= this.pump().catch((err: Error) => {
      this.problem({source: '(sources)', reason: `reading stopped: ${err.message}`})
      this.finish()
    })
  }

  /** Stops handing out items (Ctrl-C, a fatal error). */
  stop(): void {
    this.stopped = true
    this.queue.length = 0
    this.finish()
    this.space?.()
  }

  /** Records a problem found later (an item that failed to open). */
  problem(p: InputProblem): void {
    this.problemCount++
    if (p.notMail) this.notMailCount++
    if (this.problems.length < (this.o.keepProblems ?? 100)) this.problems.push(p)
    this.o.onProblem?.(p)
  }

  /** The next item, or undefined when there are no more. */
  async take(): Promise<FeedTicket | undefined> {
    this.start()
    for (;;) {
      if (this.stopped) return undefined
      if (this.o.deadline !== undefined && Date.now() >= this.o.deadline) {
        this.stop()
        return undefined
      }
      const item = this.queue.shift()
      if (item) {
        this.space?.()
        return {item, seq: this.taken++}
      }
      if (this.done) return undefined
      await new Promise<void>((r) => this.waiters.push(r))
    }
  }

  private finish(): void {
    if (!this.done) {
      this.done = true
      if (this.total === undefined || this.read < this.total) this.total = this.read
    }
    for (const w of this.waiters.splice(0)) w()
  }

  private async pump(): Promise<void> {
    const high = this.o.readAhead ?? 64
    for (let pass = 0; ; pass++) {
      const before = this.read
      for await (const entry of this.o.open()) {
        if (this.stopped) return
        if ('problem' in entry) {
          // Problems of later passes were reported in the first one.
          if (pass === 0) this.problem(entry.problem)
          continue
        }
        if ('ignored' in entry) {
          if (pass === 0) this.ignored++
          continue
        }
        if (this.o.count !== undefined && this.read >= this.o.count) return this.finish()
        if (this.o.deadline !== undefined && Date.now() >= this.o.deadline) return this.finish()
        this.read++
        this.queue.push(entry.item)
        for (const w of this.waiters.splice(0)) w()
        while (this.queue.length >= high && !this.stopped) await new Promise<void>((r) => (this.space = r))
      }
      if (!this.o.loop || this.read === before || this.stopped) break
    }
    this.finish()
  }
}
