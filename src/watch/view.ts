/**
 * What the dashboard draws, computed from the model at one instant: plain data, so components only present
 * and a paused dashboard can keep showing one frozen view while the model moves on.
 */
import type {ServerTotals} from '../protocol/totals.js'
import type {FeedStatus} from './feed-client.js'
import type {OutcomeRecord, ServerInfo, SessionPhase} from '../protocol/feed-format.js'
import type {WatchModel} from '../protocol/feed-model.js'

/** One row of the sessions table. */
export interface SessionRow {
  sessionId: string
  peer: string
  phase: SessionPhase
  lhlo?: string
  from?: string
  recipients: number
  messages: number
  bytes: number
  ageMs: number
  lastCommand?: string
  closeReason?: string
}

/** Everything one frame shows. */
export interface DashboardView {
  now: number
  status: FeedStatus
  server?: ServerInfo
  uptimeMs?: number
  totals: ServerTotals
  /** Messages per second, averaged over the last 5 s. */
  messagesPerSec: number
  /** Recipient outcomes per second, averaged over the last 5 s. */
  recipientsPerSec: number
  /** Messages per second for each of the last 30 s, oldest first. */
  spark: number[]
  /** Open sessions (in the order they opened), then recently closed ones (most recent first). */
  sessions: SessionRow[]
  /** Outcomes, newest first (only failures when `failuresOnly`). */
  outcomes: OutcomeRecord[]
  failuresOnly: boolean
  /** Events the server dropped for this dashboard because it fell behind. */
  dropped: number
  bye?: string
}

/** Options of {@link buildView}. */
export interface ViewOptions {
  failuresOnly?: boolean
  /** Outcome rows to copy (a screen never shows more). */
  maxOutcomes?: number
  /** Closed sessions listed after the open ones. */
  maxClosed?: number
}

/** True for a deferred or rejected outcome. */
export function isFailure(o: OutcomeRecord): boolean {
  return o.outcome !== 'delivered'
}

/** Builds one frame's data from the model. */
export function buildView(model: WatchModel, status: FeedStatus, now: number, o: ViewOptions = {}): DashboardView {
  const sessions: SessionRow[] = []
  const row = (s: NonNullable<ReturnType<WatchModel['findSession']>>): SessionRow => ({
    sessionId: s.sessionId,
    peer: s.peer,
    phase: s.phase,
    lhlo: s.lhlo,
    from: s.from,
    recipients: s.recipients,
    messages: s.messages,
    bytes: s.bytes,
    ageMs: Math.max(0, (s.closedAt ?? now) - s.openedAt),
    lastCommand: s.lastCommand,
    closeReason: s.closeReason,
  })
  for (const s of model.open.values()) sessions.push(row(s))
  for (const s of model.closedSessions(o.maxClosed ?? 20)) sessions.push(row(s))
  const failuresOnly = o.failuresOnly ?? false
  return {
    now,
    status,
    server: model.server,
    uptimeMs: model.server ? Math.max(0, now - model.server.startedAt) : undefined,
    totals: {...model.totals},
    messagesPerSec: model.messageRate.average(now, 5),
    recipientsPerSec: model.recipientRate.average(now, 5),
    spark: model.messageRate.series(now, 30),
    sessions,
    outcomes: model.outcomes(o.maxOutcomes ?? 200, failuresOnly ? isFailure : undefined),
    failuresOnly,
    dropped: model.dropped,
    bye: model.bye,
  }
}
