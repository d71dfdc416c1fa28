/**
 * What every replay source produces: a stream of items (one message each, opened only when a worker is about
 * to send it), problems (a bad input, reported with its file and line, then skipped) and ignored files.
 */
import type {MailParams} from '../protocol/command.js'
import type {RecordedRecipient} from './transcript.js'

/** The kinds of input replay reads. */
export type SourceKind = 'transcript' | 'maildir' | 'mbox' | 'eml' | 'generated'

/** A message opened for sending. */
export interface OpenedMessage {
  /** Envelope sender from the source ('' for the null sender); undefined when the source says nothing. */
  from?: string
  /** Recipients from the source, in order. */
  to: string[]
  /** The bytes, streamed once (any line ends: the client normalises them). */
  body: AsyncIterable<Buffer>
  /** Releases the file handle when the body was not (fully) read. Safe to call twice. */
  close(): Promise<void>
  /** What the source already knows about the bytes (a message held in memory); otherwise measured before sending. */
  info?: MessageInfo
}

/** What is known about a message's bytes before it is sent: decides its MAIL parameters and its resume key. */
export interface MessageInfo {
  /** Octets after line-end normalisation (what SIZE= declares). */
  size: number
  /** True when any octet is >= 0x80 (BODY=8BITMIME is declared only then). */
  has8bit: boolean
  /** SHA-256 of the bytes as sent, hex (part of the --resume key of corpus messages); not for generated load. */
  sha256?: string
}

/** One message to replay. */
export interface ReplayItem {
  /** Where it came from, for reports: a path, `path:line` for mbox, `path#transaction` for transcripts. */
  source: string
  kind: SourceKind
  /** Opens the message; throws an InputError when it turns out to be unusable (it is then skipped). */
  open(): Promise<OpenedMessage>
  /** MAIL parameters to keep (transcripts: BODY, SMTPUTF8, SIZE). */
  params?: MailParams
  /** How the body was sent when recorded. */
  via?: 'DATA' | 'BDAT'
  /** Recorded outcomes, one per recipient in order (transcripts only), for --compare. */
  recorded?: RecordedRecipient[]
  /** When it happened, in milliseconds since the epoch (transcripts only), for --timing original. */
  at?: number
  /**
   * A key that names this message across runs without reading it (transcripts: the recorded transaction id),
   * for --resume. Without it the key is the source plus the SHA-256 of the bytes.
   */
  key?: string
}

/** A bad input: which file (and mbox line), and why it was skipped. */
export interface InputProblem {
  source: string
  line?: number
  reason: string
  /**
   * True when the item never carried mail to send (a recorded transaction refused before its body): reported,
   * but not an input error (it does not make the exit code non-zero).
   */
  notMail?: boolean
}

/** A message that cannot be used; carries where it came from. */
export class InputError extends Error {
  constructor(
    readonly problem: InputProblem,
  ) {
    super(problem.line === undefined ? `${problem.source}: ${problem.reason}` : `${problem.source}:${problem.line}: ${problem.reason}`)
    this.name = 'InputError'
  }
}

/** What a source yields. */
export type SourceEntry = {item: ReplayItem} | {problem: InputProblem} | {ignored: string}

/** Text of an I/O error, for problems. */
export function fsReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  switch (e.code) {
    case 'ENOENT':
      return 'no such file'
    case 'EACCES':
    case 'EPERM':
      return 'permission denied'
    case 'EISDIR':
      return 'is a directory'
    default:
      return e.message ?? String(err)
  }
}
