/**
 * The watch model: the picture of a server that the event feed builds up (open sessions with their state and
 * transcript, recently closed sessions, per-recipient outcomes, totals, throughput). One reducer serves both
 * sides: the server keeps one to answer a new watcher with a snapshot, the dashboard keeps one to draw.
 * Everything is capped, so thousands of events a second never grow memory without bound.
 */
import type {LmtpEvent} from './events.js'
import {type ServerTotals, countEvent, emptyTotals} from './totals.js'
import type {FeedLine, OutcomeRecord, ServerInfo, SessionPhase, SessionSnapshot, TranscriptEntry} from './feed-format.js'

/** How much the model keeps. */
export interface ModelLimits {
  /** Transcript lines per session. */
  transcript: number
  /** Outcome records. */
  outcomes: number
  /** Closed sessions kept for inspection. */
  closed: number
  /** Open sessions tracked (a safety net when session.closed events were dropped). */
  openSessions: number
}

/** Limits for a dashboard. */
export const VIEWER_LIMITS: ModelLimits = {transcript: 200, outcomes: 500, closed: 50, openSessions: 4096}

/** Limits for the server's own copy (what a snapshot can carry). */
export const SERVER_LIMITS: ModelLimits = {transcript: 32, outcomes: 100, closed: 0, openSessions: 100_000}

/** A session as the model knows it (open or recently closed). */
export interface SessionRecord extends SessionSnapshot {
  closedAt?: number
  closeReason?: string
  /** Time of the last RCPT command: the latency of a refusal at RCPT is measured from it. */
  rcptAt?: number
  lastVerb?: string
}

/** Appends and keeps about the last `cap` items (trims in batches, so appending stays cheap). */
function pushCapped<T>(list: T[], item: T, cap: number): void {
  list.push(item)
  if (list.length > cap + Math.max(8, cap >> 1)) list.splice(0, list.length - cap)
}

/** Counts per second over a sliding window of whole seconds. */
export class RateCounter {
  private readonly counts: number[]
  private readonly secs: number[]

  constructor(private readonly window = 60) {
    this.counts = new Array<number>(window).fill(0)
    this.secs = new Array<number>(window).fill(-1)
  }

  /** Counts `n` at time `at` (ms). Times older than the window are ignored. */
  add(at: number, n = 1): void {
    const s = Math.floor(at / 1000)
    const i = s % this.window
    const have = this.secs[i]!
    if (have === s) this.counts[i]! += n
    else if (have < s) {
      this.secs[i] = s
      this.counts[i] = n
    }
  }

  /** The counts of the last `seconds` whole seconds up to `now`, oldest first (the current second last). */
  series(now: number, seconds = this.window): number[] {
    const end = Math.floor(now / 1000)
    const out: number[] = []
    for (let s = end - Math.min(seconds, this.window) + 1; s <= end; s++) {
      const i = ((s % this.window) + this.window) % this.window
      out.push(this.secs[i] === s ? this.counts[i]! : 0)
    }
    return out
  }

  /** Average per second over the last `seconds` complete seconds before `now`. */
  average(now: number, seconds = 5): number {
    const s = this.series(now - 1000, seconds)
    return s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)
  }

  /** Forgets everything. */
  clear(): void {
    this.secs.fill(-1)
    this.counts.fill(0)
  }
}

/** Applies feed lines; read its fields to draw or to snapshot. */
export class WatchModel {
  /** Open sessions, in the order they opened. */
  readonly open = new Map<string, SessionRecord>()
  /** Recently closed sessions, oldest first (read through {@link closedSessions}). */
  private closed: SessionRecord[] = []
  /** Outcomes, oldest first (read through {@link outcomes}). */
  private outcomeLog: OutcomeRecord[] = []
  totals: ServerTotals = emptyTotals()
  server: ServerInfo | undefined
  /** Events the feed reported as dropped for this reader, since the last hello. */
  dropped = 0
  /** Set when the server said `bye`. */
  bye: string | undefined
  /** Lines applied so far (the dashboard counts what arrived while paused with it). */
  applied = 0
  /** Messages received per second. */
  readonly messageRate = new RateCounter(60)
  /** Recipient outcomes per second. */
  readonly recipientRate = new RateCounter(60)

  constructor(readonly limits: ModelLimits = VIEWER_LIMITS) {}

  /** Applies one feed line (a control line or an event). */
  apply(line: FeedLine): void {
    this.applied++
    switch (line.type) {
      case 'hello':
        this.reset()
        this.server = line.server
        this.totals = emptyTotals(line.server.startedAt)
        return
      case 'snapshot':
        this.applySnapshot(line.totals, line.sessions, line.recent)
        return
      case 'dropped':
        this.dropped += line.count
        return
      case 'bye':
        this.bye = line.reason
        return
      default:
        this.applyEvent(line)
    }
  }

  /** Outcomes, newest first, at most `limit`. */
  outcomes(limit = this.limits.outcomes, filter?: (o: OutcomeRecord) => boolean): OutcomeRecord[] {
    const out: OutcomeRecord[] = []
    const log = this.outcomeLog
    const floor = Math.max(0, log.length - this.limits.outcomes)
    for (let i = log.length - 1; i >= floor && out.length < limit; i--) {
      const o = log[i]!
      if (!filter || filter(o)) out.push(o)
    }
    return out
  }

  /** Recently closed sessions, most recently closed first. */
  closedSessions(limit = this.limits.closed): SessionRecord[] {
    const out: SessionRecord[] = []
    const floor = Math.max(0, this.closed.length - this.limits.closed)
    for (let i = this.closed.length - 1; i >= floor && out.length < limit; i--) out.push(this.closed[i]!)
    return out
  }

  /** An open or recently closed session. */
  findSession(sessionId: string): SessionRecord | undefined {
    return this.open.get(sessionId) ?? this.closed.find((s) => s.sessionId === sessionId)
  }

  /** The open sessions as a snapshot carries them (transcript tails included). */
  sessionSnapshots(): SessionSnapshot[] {
    const out: SessionSnapshot[] = []
    for (const s of this.open.values()) {
      const {closedAt: _c, closeReason: _r, rcptAt: _a, lastVerb: _v, ...snap} = s
      out.push({...snap, transcript: s.transcript.slice(-this.limits.transcript)})
    }
    return out
  }

  /** The latest outcomes, oldest first, as a snapshot carries them. */
  recentOutcomes(limit = this.limits.outcomes): OutcomeRecord[] {
    return this.outcomes(limit).reverse()
  }

  /** Forgets everything (a new server, or a reconnect). */
  reset(): void {
    this.open.clear()
    this.closed = []
    this.outcomeLog = []
    this.totals = emptyTotals()
    this.server = undefined
    this.dropped = 0
    this.bye = undefined
    this.messageRate.clear()
    this.recipientRate.clear()
  }

  private applySnapshot(totals: ServerTotals, sessions: SessionSnapshot[], recent: OutcomeRecord[]): void {
    this.totals = {...totals}
    const seen = new Set<string>()
    for (const snap of sessions) {
      seen.add(snap.sessionId)
      const mine = this.open.get(snap.sessionId)
      if (mine) {
        // Keep our longer transcript; take everything else from the server.
        Object.assign(mine, {...snap, transcript: mine.transcript.length > 0 ? mine.transcript : [...snap.transcript]})
      } else {
        this.open.set(snap.sessionId, {...snap, transcript: [...snap.transcript]})
      }
    }
    for (const [id, s] of this.open) {
      if (seen.has(id)) continue
      this.open.delete(id)
      this.retire(s, s.lastAt, 'closed (while events were dropped)')
    }
    const newest = this.outcomeLog.length > 0 ? this.outcomeLog[this.outcomeLog.length - 1]!.at : -1
    for (const o of recent) {
      if (o.at > newest) pushCapped(this.outcomeLog, o, this.limits.outcomes)
    }
  }

  private retire(s: SessionRecord, at: number, reason: string): void {
    s.phase = 'closed'
    s.closedAt = at
    s.closeReason = reason
    if (this.limits.closed > 0) pushCapped(this.closed, s, this.limits.closed)
  }

  private session(e: LmtpEvent): SessionRecord | undefined {
    const s = this.open.get(e.sessionId)
    if (s) s.lastAt = e.at
    return s
  }

  private setPhase(s: SessionRecord, phase: SessionPhase): void {
    if (s.phase !== 'closing') s.phase = phase
  }

  private transcript(s: SessionRecord, entry: TranscriptEntry): void {
    if (this.limits.transcript > 0) pushCapped(s.transcript, entry, this.limits.transcript)
  }

  private outcome(o: OutcomeRecord): void {
    pushCapped(this.outcomeLog, o, this.limits.outcomes)
    this.recipientRate.add(o.at)
  }

  private applyEvent(e: LmtpEvent): void {
    countEvent(this.totals, e)
    switch (e.type) {
      case 'session.opened': {
        if (this.open.size >= this.limits.openSessions) {
          const oldest = this.open.keys().next().value
          if (oldest !== undefined) this.open.delete(oldest)
        }
        this.open.set(e.sessionId, {
          sessionId: e.sessionId,
          peer: e.peer,
          listener: e.listener,
          transport: e.transport,
          openedAt: e.at,
          phase: 'connected',
          recipients: 0,
          bytes: 0,
          messages: 0,
          lastAt: e.at,
          transcript: [],
        })
        return
      }
      case 'session.closed': {
        const s = this.open.get(e.sessionId)
        if (!s) return
        this.open.delete(e.sessionId)
        s.lastAt = e.at
        this.retire(s, e.at, e.reason)
        return
      }
      case 'command': {
        const s = this.session(e)
        if (!s) return
        s.lastCommand = e.line
        s.lastVerb = e.verb
        if (e.verb === 'RCPT') s.rcptAt = e.at
        else if (e.verb === 'QUIT') s.phase = 'closing'
        else if (e.verb === 'BDAT') this.setPhase(s, 'data')
        this.transcript(s, {at: e.at, dir: 'C', text: e.line})
        return
      }
      case 'reply': {
        const s = this.session(e)
        if (!s) return
        if (s.lastVerb === 'DATA' && e.code === 354) this.setPhase(s, 'data')
        this.transcript(s, {at: e.at, dir: 'S', text: [String(e.code), e.enhanced, e.text].filter(Boolean).join(' ')})
        return
      }
      case 'lhlo': {
        const s = this.session(e)
        if (!s) return
        s.lhlo = e.name
        this.setPhase(s, 'ready')
        return
      }
      case 'tls': {
        const s = this.session(e)
        if (!s) return
        s.tls = e.protocol
        this.setPhase(s, 'connected')
        return
      }
      case 'transaction.started': {
        const s = this.session(e)
        if (!s) return
        s.from = e.from
        s.recipients = 0
        this.setPhase(s, 'mail')
        return
      }
      case 'recipient.accepted': {
        const s = this.session(e)
        if (!s) return
        s.recipients = Math.max(s.recipients, e.index + 1)
        this.setPhase(s, 'rcpt')
        return
      }
      case 'recipient.rejected': {
        const s = this.session(e)
        this.outcome({
          at: e.at,
          sessionId: e.sessionId,
          transactionId: e.transactionId,
          recipient: e.recipient,
          stage: 'RCPT',
          outcome: e.code >= 500 ? 'rejected' : 'deferred',
          code: e.code,
          enhanced: e.enhanced,
          text: e.text,
          latencyMs: s?.rcptAt !== undefined ? Math.max(0, e.at - s.rcptAt) : undefined,
        })
        return
      }
      case 'body.received': {
        this.messageRate.add(e.at)
        const s = this.session(e)
        if (!s) return
        s.bytes += e.bytes
        s.messages++
        this.setPhase(s, 'delivering')
        return
      }
      case 'recipient.result': {
        this.session(e)
        this.outcome({
          at: e.at,
          sessionId: e.sessionId,
          transactionId: e.transactionId,
          recipient: e.recipient,
          stage: 'DATA',
          outcome: e.outcome,
          code: e.code,
          enhanced: e.enhanced,
          text: e.text,
          mailbox: e.mailbox,
          latencyMs: e.latencyMs,
        })
        return
      }
      case 'transaction.finished': {
        const s = this.session(e)
        if (s) this.setPhase(s, 'ready')
        return
      }
    }
  }
}
