/**
 * The session transcript format (`lmtp-transcript`, version 1): what `lmtp serve --record DIR` writes and
 * `lmtp replay` reads. One JSON object per line (JSON lines), one file per session, named
 * `<UTC start, compact ISO>-<session id>.jsonl`; each message body is stored once beside the transcripts in
 * `bodies/<sha256>` (content-addressed) and referenced by name and SHA-256. Every file is created 0600 and
 * every directory 0700, because a recording keeps message contents.
 *
 * Lines, in the order things happened (`t` is milliseconds since the session opened):
 * - `{"type":"session","format":"lmtp-transcript","v":1,"id","at","start","peer","listener","transport"}` first;
 * - `{"type":"c","t","verb","line"}` a command line as received (sanitised, at most 512 characters);
 * - `{"type":"s","t","code","enhanced"?,"text"}` a reply as sent (multi-line text joined by newlines);
 * - `{"type":"tls","t","protocol","cipher"}` after STARTTLS;
 * - `{"type":"body","t","tx","sha256","file","bytes","via"}` once a body was received in full;
 * - `{"type":"transaction","t","tx","start","from","params","rcpts":[...],"body"?,"aborted"}` when a
 *   transaction ended: the self-contained record replay uses. `rcpts` lists every RCPT in order, duplicates
 *   kept, each with its recorded outcome (`stage` RCPT when refused there, DATA for its reply after the body);
 * - `{"type":"end","t","reason","bytesIn","bytesOut"}` last.
 * Readers ignore unknown line types and fields, so later versions can add them; a change that breaks readers
 * raises `v`.
 */
import type {MailParams} from '../protocol/command.js'
import type {Outcome} from '../protocol/events.js'

/** The `format` name in a transcript's first line. */
export const TRANSCRIPT_FORMAT = 'lmtp-transcript'

/** The format version this code writes and reads. */
export const TRANSCRIPT_VERSION = 1

/** The directory (inside a recording directory) holding the bodies. */
export const BODIES_DIR = 'bodies'

/** The first line of a transcript. */
export interface SessionLine {
  type: 'session'
  format: typeof TRANSCRIPT_FORMAT
  v: number
  id: string
  /** Milliseconds since the epoch when the session opened. */
  at: number
  /** The same instant as ISO 8601 text, for people. */
  start: string
  peer: string
  listener: string
  transport: 'tcp' | 'unix'
}

/** A command as received. */
export interface CommandLine {
  type: 'c'
  t: number
  verb: string
  line: string
}

/** A reply as sent. */
export interface ReplyLine {
  type: 's'
  t: number
  code: number
  enhanced?: string
  text: string
}

/** TLS negotiated. */
export interface TlsLine {
  type: 'tls'
  t: number
  protocol: string
  cipher: string
}

/** A stored body. `file` is relative to the recording directory. */
export interface BodyRef {
  sha256: string
  file: string
  /** Octets as received (dot-stuffing removed, CRLF line ends): exactly what a client sends again. */
  bytes: number
  via: 'DATA' | 'BDAT'
}

/** A body was stored. */
export interface BodyLine extends BodyRef {
  type: 'body'
  t: number
  tx: string
}

/** One RCPT of a recorded transaction and what became of it. */
export interface RecordedRecipient {
  /** The address as given in RCPT TO. */
  to: string
  /** RCPT when refused at RCPT time; DATA for the reply after the body; absent when no outcome was recorded. */
  stage?: 'RCPT' | 'DATA'
  code?: number
  enhanced?: string
  text?: string
  outcome?: Outcome
}

/** A finished (or aborted) transaction: everything replay needs, on one line. */
export interface TransactionLine {
  type: 'transaction'
  t: number
  tx: string
  /** `t` of the MAIL command (for --timing original). */
  start: number
  from: string
  params: MailParams
  rcpts: RecordedRecipient[]
  body?: BodyRef
  aborted: boolean
}

/** The session ended. */
export interface EndLine {
  type: 'end'
  t: number
  reason: string
  bytesIn: number
  bytesOut: number
}

/** Any line of a transcript. */
export type TranscriptLine = SessionLine | CommandLine | ReplyLine | TlsLine | BodyLine | TransactionLine | EndLine

/** True when a parsed first line is a transcript header this code can read. */
export function isSessionLine(value: unknown): value is SessionLine {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return v.type === 'session' && v.format === TRANSCRIPT_FORMAT && typeof v.v === 'number'
}

/** A compact, sortable UTC timestamp for file names: `20250102T030405.678Z`. */
export function compactTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '')
}

/** A session id made safe as part of a file name. */
export function safeFileName(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100)
}
