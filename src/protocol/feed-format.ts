/**
 * The event feed's wire format: what `lmtp serve` writes on its control socket and `lmtp watch` reads.
 * Newline-delimited JSON: a `hello` line (with the format version), a `snapshot` line, then every bus event as
 * it happens, plus `dropped` (this watcher fell behind and lost events) and `bye` (the server is stopping).
 * Scripts can consume it with jq; the dashboard uses the same types.
 */
import {join} from 'node:path'
import type {LmtpEvent, Outcome} from './events.js'
import type {ServerTotals} from './totals.js'

/** The feed format version, in every `hello` line. Bumped only for changes that break a reader. */
export const FEED_VERSION = 1

/** The first line of the feed: who is talking and in which format version. */
export interface FeedHello {
  type: 'hello'
  /** Always `lmtp-events`, so a reader can tell it reached the right socket. */
  feed: 'lmtp-events'
  version: typeof FEED_VERSION
  at: number
  server: ServerInfo
}

/** What the server says about itself in `hello`. */
export interface ServerInfo {
  hostname: string
  pid: number
  listeners: string[]
  startedAt: number
}

/** Where a session is in the protocol, as far as the events tell. */
export type SessionPhase = 'connected' | 'ready' | 'mail' | 'rcpt' | 'data' | 'delivering' | 'closing' | 'closed'

/** One line of a session's transcript: a command (C) or a reply (S), with its time. */
export interface TranscriptEntry {
  at: number
  dir: 'C' | 'S'
  text: string
}

/** An open session as the snapshot reports it. */
export interface SessionSnapshot {
  sessionId: string
  peer: string
  listener: string
  transport: 'tcp' | 'unix'
  openedAt: number
  phase: SessionPhase
  lhlo?: string
  tls?: string
  /** Sender of the current (or last) transaction. */
  from?: string
  /** Recipients accepted so far in the current (or last) transaction. */
  recipients: number
  /** Message bytes received in this session. */
  bytes: number
  messages: number
  /** The last command line, e.g. `RCPT TO:<a@example.com>`. */
  lastCommand?: string
  /** Time of the last event of this session. */
  lastAt: number
  /** The tail of the transcript (a few dozen lines at most). */
  transcript: TranscriptEntry[]
}

/** One recipient's outcome: a per-recipient reply after the body, or a refusal at RCPT. */
export interface OutcomeRecord {
  at: number
  sessionId: string
  transactionId: string
  recipient: string
  /** RCPT when refused at RCPT time, DATA for the per-recipient reply after the body. */
  stage: 'RCPT' | 'DATA'
  outcome: Outcome
  code: number
  enhanced?: string
  text: string
  mailbox?: string
  /** Milliseconds from the end of data (or from the RCPT command) to the reply. */
  latencyMs?: number
}

/** The second line: open sessions, totals since start and the most recent outcomes. */
export interface FeedSnapshot {
  type: 'snapshot'
  at: number
  totals: ServerTotals
  sessions: SessionSnapshot[]
  /** The latest outcomes, oldest first (at most 100). */
  recent: OutcomeRecord[]
}

/**
 * This watcher read too slowly: `count` events were not sent to it (`total` since it connected). A fresh
 * `snapshot` line follows, so a reader's picture of the open sessions is exact again.
 */
export interface FeedDropped {
  type: 'dropped'
  at: number
  count: number
  total: number
}

/** The server is stopping; the socket closes next. */
export interface FeedBye {
  type: 'bye'
  at: number
  reason: string
}

/** Any line of the feed. Live events keep their own `type` (`session.opened`, `recipient.result`, ...). */
export type FeedLine = FeedHello | FeedSnapshot | FeedDropped | FeedBye | LmtpEvent

/**
 * Parses one feed line; undefined for anything that is not a JSON object with a string `type` (a reader skips
 * those rather than dying on them).
 */
export function parseFeedLine(text: string): FeedLine | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null || typeof (value as {type?: unknown}).type !== 'string') return undefined
  return value as FeedLine
}

/**
 * Where a server's feed socket lives by default, most preferred first: `$XDG_RUNTIME_DIR/lmtp/events.sock`
 * (a per-user 0700 directory), then `/tmp/lmtp-<uid>/events.sock`. `lmtp watch` tries them all, so a server
 * started without XDG_RUNTIME_DIR (cron, a service) is still found from a login shell.
 */
export function defaultEventsPaths(env: NodeJS.ProcessEnv = process.env, uid: number = process.getuid?.() ?? 0): string[] {
  const paths: string[] = []
  const runtime = env.XDG_RUNTIME_DIR
  if (runtime?.startsWith('/')) paths.push(join(runtime, 'lmtp', 'events.sock'))
  paths.push(join('/tmp', `lmtp-${uid}`, 'events.sock'))
  return paths
}

/** The default feed socket path a server uses: the first of {@link defaultEventsPaths}. */
export function defaultEventsPath(env: NodeJS.ProcessEnv = process.env, uid?: number): string {
  return defaultEventsPaths(env, uid)[0]!
}
