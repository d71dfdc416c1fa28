/**
 * What a replay run reports: the progress snapshots, the final summary (also `lmtp replay --json`), and the one
 * rule that turns a summary into an exit code.
 */
import {EXIT, type ExitCode} from '../util/exit-codes.js'
import type {Outcome} from '../protocol/events.js'
import type {InputProblem} from './item.js'
import type {LatencyStats, Phase} from './latency.js'

/** A progress snapshot. */
export interface ReplayProgress {
  /** Messages finished (sent, with an outcome) plus skipped ones. */
  done: number
  /** Total, once known. */
  total?: number
  elapsedMs: number
  /** Messages finished per second so far. */
  rate: number
  delivered: number
  deferred: number
  rejected: number
  skipped: number
  final: boolean
}

/** Counts by outcome. */
export interface OutcomeCounts {
  total: number
  delivered: number
  deferred: number
  rejected: number
}

/** A reply as compared: code, enhanced code, text. */
export interface ComparedReply {
  code?: number
  enhanced?: string
  text?: string
  outcome?: Outcome
}

/** One recipient whose outcome differs from the recording. */
export interface OutcomeChange {
  source: string
  index: number
  recipient: string
  recorded: ComparedReply
  now: {code: number; enhanced?: string; text: string; outcome: Outcome}
}

/**
 * Changes that are the same change: the same recorded and new code and enhanced code, and the same new reply
 * text once ids are taken out of it (see normaliseReplyText). Counted over every change, not only the listed ones.
 */
export interface ChangeGroup {
  recorded: {code?: number; enhanced?: string}
  now: {code: number; enhanced?: string; outcome: Outcome; text: string}
  /** Changes in the group. */
  count: number
  /** Recipients with their counts, most frequent first (at most 1000 kept; `recipientCount` counts them all). */
  recipients: {recipient: string; count: number}[]
  recipientCount: number
  /** Where the first of them came from. */
  firstSource: string
}

/** The --compare part of a summary. */
export interface CompareSummary {
  compared: number
  unchanged: number
  changed: number
  /** Recipients without a recorded outcome, or whose envelope was overridden. */
  notComparable: number
  /** Every change grouped, most frequent group first. */
  groups: ChangeGroup[]
  /** The first changes one by one (at most 1000; --report lists every one). */
  changes: OutcomeChange[]
}

/** The --resume part of a summary. */
export interface ResumeSummary {
  file: string
  /** Messages not sent because the file says every recipient already had a final answer. */
  alreadyDone: number
  /** Recipients not sent again (of messages sent again to the others, and of messages not sent at all). */
  recipientsAlreadyDone: number
}

/** The result of a run (the --json output). */
export interface ReplaySummary {
  server: string
  mode: 'closed-loop' | 'open-loop' | 'original-timing'
  concurrency: number
  /** The --rate asked for (open loop). */
  targetRate?: number
  elapsedMs: number
  /** Messages by outcome: delivered (every recipient), deferred (some deferred, none rejected), rejected (any). */
  messages: OutcomeCounts
  recipients: OutcomeCounts
  /** Recipients by reply code, most frequent first; `no reply` when the connection was lost before a reply. */
  codes: {reply: string; count: number}[]
  throughput: {
    /** Messages started per second, from the start of the run to the last start (the achieved rate). */
    startedPerSec: number
    messagesPerSec: number
    recipientsPerSec: number
    /** Message octets sent per second. */
    bytesPerSec: number
  }
  bytes: number
  /** Milliseconds per phase. */
  latency: Record<Phase, LatencyStats>
  /**
   * Sessions: opened; closed by replay (QUIT: end of run, --messages-per-connection, one transaction per
   * session); lost (the server closed it, the connection failed or a reply timed out); dropped (replay closed
   * it because the server broke the protocol); failed connection attempts.
   */
  connections: {opened: number; closed: number; lost: number; dropped: number; failedAttempts: number}
  /** Set when the server allowed one transaction per session (GNU Mailutils): replay then used one session per message. */
  oneTransactionPerSession?: string
  input: {
    read: number
    /** Items not sent: bad input (unreadable, corrupt) plus items that carried no mail (`notMail`). */
    skipped: number
    /** Of the skipped, items that never carried mail to send (recorded transactions refused before the body). */
    notMail: number
    ignoredFiles: number
    problems: InputProblem[]
  }
  resume?: ResumeSummary
  compare?: CompareSummary
  violations: {count: number; first: string[]}
  /** Why the run stopped early, if it did. */
  aborted?: string
  /** Ctrl-C: messages in flight finished, the rest of the input was not sent. */
  interrupted?: boolean
  exitCode: ExitCode
}

/**
 * The exit code of a run that was not abandoned (an abandoned run exits with the code of why the session could
 * not be (re)opened: 74 connection, 69 no STARTTLS/CHUNKING/AUTH, 78 AUTH refused). Nothing to send: 66. Then,
 * first match: 130 interrupted (Ctrl-C) before all input was sent, as `send` and shells report it (run again
 * with the same --resume FILE to send the rest); 76 the server broke the protocol, or (--compare) an outcome
 * changed; 69 a recipient was rejected (not with --compare, where an unchanged 5xx is not a failure); 65 an input
 * item was unreadable or corrupt and was not sent; 75 a recipient was deferred; else 0.
 */
export function exitCodeOf(s: ReplaySummary, generated: boolean): ExitCode {
  if (s.messages.total === 0 && !generated && !s.interrupted && !s.resume?.alreadyDone) return EXIT.noInput
  if (s.interrupted) return EXIT.interrupted
  if (s.violations.count > 0) return EXIT.protocol
  if (s.compare && s.compare.changed > 0) return EXIT.protocol
  if (!s.compare && s.recipients.rejected > 0) return EXIT.unavailable
  if (s.input.skipped > s.input.notMail) return EXIT.dataErr
  if (!s.compare && s.recipients.deferred > 0) return EXIT.tempFail
  return EXIT.ok
}
