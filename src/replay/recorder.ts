/**
 * The session recorder behind `lmtp serve --record DIR`: it listens on the event bus and writes one transcript
 * per session (see transcript.ts), and it stores each message body once, content-addressed by SHA-256, through
 * a Backend decorator that tees the spool. Recording never delays a reply: transcript lines are queued on
 * buffered file streams, the body copy is hashed while it streams, and storing the finished copy happens in the
 * background. A recording failure (disk full, permissions) is reported as a warning and never touches delivery.
 */
import {createHash, randomBytes} from 'node:crypto'
import {constants, createWriteStream, type WriteStream} from 'node:fs'
import {mkdir, rename, unlink} from 'node:fs/promises'
import path from 'node:path'
import {checkTrustedPath} from '../net/socket-file.js'
import type {Path} from '../protocol/address.js'
import type {Backend, DeliveryResult, Envelope, RecipientCheck, SessionInfo, Spool} from '../protocol/backend.js'
import {type MailParams, parseCommand} from '../protocol/command.js'
import type {EventBus, LmtpEvent} from '../protocol/events.js'
import {
  BODIES_DIR,
  type BodyRef,
  compactTimestamp,
  type RecordedRecipient,
  safeFileName,
  type SessionLine,
  TRANSCRIPT_FORMAT,
  TRANSCRIPT_VERSION,
  type TranscriptLine,
  type TransactionLine,
} from './transcript.js'

/** Options of a recorder. */
export interface RecorderOptions {
  /** Called with a human-readable warning when recording something failed (delivery is unaffected). */
  onWarning?: (message: string) => void
  /**
   * Body bytes the tee may buffer before it waits for the recording disk (default 16 MiB). Keeps memory bounded
   * when the recording disk is much slower than the spool disk; below it, the body copy never slows delivery.
   */
  maxBuffered?: number
  /** The user the directory may belong to besides root (default: the running user; serve --user passes its). */
  owner?: number
}

/** The recording directory (or its `bodies`) is one another user could have prepared; the message says which. */
export class RecordDirError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'RecordDirError'
  }
}

async function trustRecordDir(dir: string, owner: number | undefined): Promise<void> {
  const problem = await checkTrustedPath(dir, 'directory', {uid: owner})
  if (problem) throw new RecordDirError(problem)
}

/** Recording files are created, never reused: exclusive, and never through a symlink. */
const RECORD_FILE_FLAGS = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW

/** Opens a new recording file (0600); fs.open takes numeric flags although the stream options are typed as text. */
function createRecordFile(file: string): WriteStream {
  return createWriteStream(file, {flags: RECORD_FILE_FLAGS as unknown as string, mode: 0o600})
}

/** Counters of what a recorder wrote. */
export interface RecorderStats {
  sessions: number
  transactions: number
  bodies: number
  warnings: number
}

interface TxState {
  id: string
  start: number
  from: string
  params: MailParams
  rcpts: RecordedRecipient[]
  /** Index among accepted recipients -> position in rcpts. */
  accepted: number[]
  body?: BodyRef
  via?: 'DATA' | 'BDAT'
}

interface SessionState {
  out: WriteStream
  at: number
  tx?: TxState
  /** Params of the last MAIL command line, for the transaction it starts. */
  mailParams?: MailParams
}

/** Records sessions into a directory. Create with {@link SessionRecorder.create}. */
export class SessionRecorder {
  /** What was written so far. */
  readonly stats: RecorderStats = {sessions: 0, transactions: 0, bodies: 0, warnings: 0}
  private readonly sessions = new Map<string, SessionState>()
  private readonly pending = new Set<Promise<unknown>>()
  /** Where bodies are stored, one file per SHA-256 (inside the recording directory). */
  readonly bodiesDir: string

  private constructor(
    /** The recording directory. */
    readonly dir: string,
    private readonly options: RecorderOptions,
  ) {
    this.bodiesDir = path.join(dir, BODIES_DIR)
  }

  /**
   * Creates the directory (0700) and its bodies directory; throws when it cannot, and a {@link RecordDirError}
   * when either is one another user could have prepared (see checkTrustedPath): bodies are written there,
   * possibly as root, so a world-writable directory or a `bodies` symlink must never be followed.
   */
  static async create(dir: string, options: RecorderOptions = {}): Promise<SessionRecorder> {
    const r = new SessionRecorder(path.resolve(dir), options)
    await mkdir(r.dir, {recursive: true, mode: 0o700})
    await trustRecordDir(r.dir, options.owner)
    await mkdir(r.bodiesDir, {mode: 0o700}).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err
    })
    await trustRecordDir(r.bodiesDir, options.owner)
    return r
  }

  /** Subscribes to a bus; returns the unsubscribe function. */
  attach(bus: EventBus): () => void {
    return bus.on((e) => this.onEvent(e))
  }

  /** Wraps a backend so that every body is also stored in the recording (see {@link RecordingBackend}). */
  wrap(backend: Backend): Backend {
    return new RecordingBackend(backend, this)
  }

  /** Waits until every transcript and body is written and closed. */
  async close(): Promise<void> {
    for (const [id, s] of this.sessions) {
      this.sessions.delete(id)
      this.track(endStream(s.out))
    }
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
  }

  /** Reports a recording failure (never thrown: delivery must go on). */
  warn(message: string): void {
    this.stats.warnings++
    this.options.onWarning?.(`recording: ${message}`)
  }

  /** Keeps a background task so close() can wait for it. */
  track(p: Promise<unknown>): void {
    const q = p.catch((err: Error) => this.warn(err.message)).finally(() => this.pending.delete(q))
    this.pending.add(q)
  }

  /** Where a body copy is being written while it streams. */
  tempBodyPath(): string {
    return path.join(this.bodiesDir, `.tmp-${process.pid}-${randomBytes(8).toString('hex')}`)
  }

  /** The final, content-addressed path of a body (relative to the recording directory and absolute). */
  bodyPath(sha256: string): {relative: string; absolute: string} {
    return {relative: `${BODIES_DIR}/${sha256}`, absolute: path.join(this.bodiesDir, sha256)}
  }

  /** The limit of buffered body bytes before the tee waits. */
  get maxBuffered(): number {
    return this.options.maxBuffered ?? 16 * 1024 * 1024
  }

  /** Called by the tee spool once a body was received in full and hashed. */
  noteBody(sessionId: string, transactionId: string, stored: Omit<BodyRef, 'via'>): void {
    this.stats.bodies++
    const s = this.sessions.get(sessionId)
    if (!s) return
    // body.received (which says DATA or BDAT) is emitted before the spool is finished.
    const tx = s.tx?.id === transactionId ? s.tx : undefined
    const ref: BodyRef = {...stored, via: tx?.via ?? 'DATA'}
    if (tx) tx.body = ref
    this.write(s, {type: 'body', t: Date.now() - s.at, tx: transactionId, ...ref})
  }

  private write(s: SessionState, line: TranscriptLine): void {
    s.out.write(`${JSON.stringify(line)}\n`)
  }

  private onEvent(e: LmtpEvent): void {
    if (e.role !== 'server') return
    if (e.type === 'session.opened') {
      this.open(e.sessionId, e.at, e.peer, e.listener, e.transport)
      return
    }
    const s = this.sessions.get(e.sessionId)
    if (!s) return
    const t = e.at - s.at
    switch (e.type) {
      case 'command':
        this.write(s, {type: 'c', t, verb: e.verb, line: e.line})
        if (e.verb === 'MAIL') {
          const parsed = parseCommand(e.line)
          s.mailParams = parsed.ok && parsed.command.verb === 'MAIL' ? parsed.command.params : {}
        }
        break
      case 'reply':
        this.write(s, {type: 's', t, code: e.code, ...(e.enhanced ? {enhanced: e.enhanced} : {}), text: e.text})
        break
      case 'tls':
        this.write(s, {type: 'tls', t, protocol: e.protocol, cipher: e.cipher})
        break
      case 'transaction.started':
        s.tx = {id: e.transactionId, start: t, from: e.from, params: s.mailParams ?? {}, rcpts: [], accepted: []}
        s.mailParams = undefined
        break
      case 'recipient.accepted':
        if (s.tx?.id === e.transactionId) {
          s.tx.accepted[e.index] = s.tx.rcpts.length
          s.tx.rcpts.push({to: e.recipient})
        }
        break
      case 'recipient.rejected':
        s.tx?.rcpts.push({
          to: e.recipient,
          stage: 'RCPT',
          code: e.code,
          ...(e.enhanced ? {enhanced: e.enhanced} : {}),
          text: e.text,
          outcome: e.code >= 500 ? 'rejected' : 'deferred',
        })
        break
      case 'body.received':
        if (s.tx?.id === e.transactionId) s.tx.via = e.via
        break
      case 'recipient.result': {
        const tx = s.tx
        const at = tx?.id === e.transactionId ? tx.accepted[e.index] : undefined
        if (tx && at !== undefined) {
          const r = tx.rcpts[at]!
          r.stage = 'DATA'
          r.code = e.code
          if (e.enhanced) r.enhanced = e.enhanced
          r.text = e.text
          r.outcome = e.outcome
        }
        break
      }
      case 'transaction.finished': {
        const tx = s.tx
        if (!tx || tx.id !== e.transactionId) break
        s.tx = undefined
        this.stats.transactions++
        const line: TransactionLine = {
          type: 'transaction',
          t,
          tx: tx.id,
          start: tx.start,
          from: tx.from,
          params: tx.params,
          rcpts: tx.rcpts,
          ...(tx.body ? {body: tx.body} : {}),
          aborted: e.aborted,
        }
        this.write(s, line)
        break
      }
      case 'session.closed':
        if (s.tx) this.write(s, {type: 'transaction', t, tx: s.tx.id, start: s.tx.start, from: s.tx.from, params: s.tx.params, rcpts: s.tx.rcpts, aborted: true})
        this.write(s, {type: 'end', t, reason: e.reason, bytesIn: e.bytesIn, bytesOut: e.bytesOut})
        this.sessions.delete(e.sessionId)
        this.track(endStream(s.out))
        break
      default:
        break
    }
  }

  private open(sessionId: string, at: number, peer: string, listener: string, transport: 'tcp' | 'unix'): void {
    const file = path.join(this.dir, `${compactTimestamp(at)}-${safeFileName(sessionId)}.jsonl`)
    const out = createRecordFile(file)
    out.on('error', (err) => this.warn(`cannot write ${file}: ${err.message}`))
    const s: SessionState = {out, at}
    this.sessions.set(sessionId, s)
    this.stats.sessions++
    const header: SessionLine = {
      type: 'session',
      format: TRANSCRIPT_FORMAT,
      v: TRANSCRIPT_VERSION,
      id: sessionId,
      at,
      start: new Date(at).toISOString(),
      peer,
      listener,
      transport,
    }
    this.write(s, header)
  }
}

function endStream(out: WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (out.destroyed || out.writableFinished) return resolve()
    out.once('close', () => resolve())
    out.end()
  })
}

/**
 * A Backend decorator: delegates everything to the real backend, and tees each spool into the recording
 * (hashing with SHA-256 while the body streams). The real backend always receives its own spool back.
 */
export class RecordingBackend implements Backend {
  constructor(
    private readonly inner: Backend,
    private readonly recorder: SessionRecorder,
  ) {}

  /** Delegates to the real backend. */
  checkRecipient(p: Path, session: SessionInfo): Promise<RecipientCheck> {
    return this.inner.checkRecipient(p, session)
  }

  /** Opens the real spool and a body copy beside it. */
  async openSpool(envelope: Envelope, session: SessionInfo): Promise<Spool> {
    const spool = await this.inner.openSpool(envelope, session)
    return new TeeSpool(spool, this.recorder, session.sessionId, envelope.transactionId)
  }

  /** Delivers the real spool. */
  deliver(
    envelope: Envelope,
    spool: Spool,
    session: SessionInfo,
    onResult: (index: number, result: DeliveryResult) => void,
  ): Promise<void> {
    return this.inner.deliver(envelope, spool instanceof TeeSpool ? spool.inner : spool, session, onResult)
  }
}

/** A spool that writes to the real spool and to a hashed body copy. */
class TeeSpool implements Spool {
  private readonly hash = createHash('sha256')
  private readonly tmp: string
  private copy: WriteStream | undefined
  private bytes = 0
  private state: 'open' | 'finished' | 'discarded' = 'open'

  constructor(
    readonly inner: Spool,
    private readonly recorder: SessionRecorder,
    private readonly sessionId: string,
    private readonly transactionId: string,
  ) {
    this.tmp = recorder.tempBodyPath()
    const copy = createRecordFile(this.tmp)
    copy.on('error', (err) => {
      if (this.copy) recorder.warn(`cannot store a body (${err.message}); the transcript will lack it`)
      this.copy = undefined
    })
    this.copy = copy
  }

  write(chunk: Buffer): void | Promise<void> {
    this.hash.update(chunk)
    this.bytes += chunk.length
    const copy = this.copy
    copy?.write(chunk)
    const r = this.inner.write(chunk)
    if (copy && copy.writableLength > this.recorder.maxBuffered) {
      const drained = new Promise<void>((resolve) => {
        copy.once('drain', resolve)
        copy.once('close', resolve)
      })
      return Promise.all([r, drained]).then(() => undefined)
    }
    return r
  }

  async finish(): Promise<void> {
    await this.inner.finish()
    this.state = 'finished'
    const copy = this.copy
    if (!copy) return
    const sha256 = this.hash.digest('hex')
    const target = this.recorder.bodyPath(sha256)
    // Storing happens in the background: the replies do not wait for the recording.
    this.recorder.track(
      (async () => {
        await new Promise<void>((resolve, reject) => {
          copy.once('error', reject)
          copy.end(() => resolve())
        })
        if (copy.destroyed && !copy.writableFinished) throw new Error(`the body copy ${this.tmp} was not written`)
        await rename(this.tmp, target.absolute)
      })().catch(async (err: Error) => {
        await unlink(this.tmp).catch(() => {})
        throw err
      }),
    )
    this.recorder.noteBody(this.sessionId, this.transactionId, {sha256, file: target.relative, bytes: this.bytes})
  }

  async discard(): Promise<void> {
    await this.inner.discard()
    if (this.state !== 'open') return
    this.state = 'discarded'
    const copy = this.copy
    this.copy = undefined
    if (copy) {
      copy.destroy()
      this.recorder.track(unlink(this.tmp).catch(() => {}))
    }
  }
}
