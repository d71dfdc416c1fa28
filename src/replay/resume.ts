/**
 * The --resume file: what a replay has already sent, so that an interrupted migration can go on without sending
 * anything twice. NDJSON, appended as results come:
 *
 *   {"format":"lmtp-replay-resume","v":1,"created":"..."}                 first line
 *   {"key":"...","source":"...","done":[0,2],"at":"..."}                  one line per message sent
 *
 * `key` names the message across runs: a transcript's transaction id (`tx:<id>`), else the source (file path,
 * `mbox:line`) and the SHA-256 of its bytes, so that a changed file is sent again. `done` lists the recipients
 * (by RCPT index) that got a final answer: delivered (2xx) or rejected (5xx). A deferred (4xx) or unanswered
 * recipient is not done, and is sent again on the next run; a message whose every recipient is done is not.
 *
 * Crash safety: each line is written with one write() as soon as its message has its replies, and the file is
 * fsynced at most 200 ms later and at the end. A process killed mid-line leaves a torn last line: it is ignored
 * and cut off by the next run (that message is sent again: a duplicate is possible, a loss is not).
 */
import {type FileHandle, open, readFile} from 'node:fs/promises'
import path from 'node:path'
import type {MessageInfo, ReplayItem} from './item.js'

/** The first line's format name. */
export const RESUME_FORMAT = 'lmtp-replay-resume'

const SYNC_EVERY_MS = 200

/**
 * The key of a message across runs. Transcripts: the recorded transaction id. A Maildir file: its unique name
 * (the part before `:2,`, which survives a move from new/ to cur/ and flag changes) and its SHA-256. An mbox
 * message: the absolute file path, the line of its From_ line and its SHA-256. Any other file: its absolute path
 * and SHA-256. A changed message gets a new key, so it is sent again.
 */
export function resumeKey(item: ReplayItem, info: MessageInfo): string {
  if (item.key !== undefined) return item.key
  const sha = info.sha256 ?? ''
  if (item.kind === 'maildir') return `maildir:${path.basename(item.source).split(':')[0]}:${sha}`
  if (item.kind === 'mbox') {
    const m = /^(.*):(\d+)$/.exec(item.source)
    return m ? `mbox:${path.resolve(m[1]!)}:${m[2]}:${sha}` : `mbox:${path.resolve(item.source)}:${sha}`
  }
  return `${item.kind}:${path.resolve(item.source)}:${sha}`
}

/** A resume file that cannot be used (not one, unreadable): the message says which and why. */
export class ResumeFileError extends Error {
  constructor(
    message: string,
    /** not-resume: the file is something else (a usage error); unreadable / unwritable: an I/O problem. */
    readonly kind: 'not-resume' | 'unreadable' | 'unwritable',
  ) {
    super(message)
    this.name = 'ResumeFileError'
  }
}

interface Entry {
  key: string
  source?: string
  done: number[]
}

/** The set of messages (and recipients) already sent, read from a resume file, and the appender for new ones. */
export class ResumeJournal {
  private pending: Promise<void> = Promise.resolve()
  private dirty = false
  private timer: NodeJS.Timeout | undefined
  private failure: Error | undefined
  private closing: Promise<void> | undefined

  private constructor(
    readonly file: string,
    private readonly fh: FileHandle,
    private readonly done: Map<string, Set<number>>,
  ) {}

  /** Opens (or creates) a resume file and reads what it says was sent. Throws ResumeFileError when it is not one. */
  static async open(file: string): Promise<ResumeJournal> {
    let text = ''
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ResumeFileError(`cannot read the resume file ${file}: ${(err as Error).message}`, 'unreadable')
    }
    const done = parseResumeText(text, file)
    let fh: FileHandle
    try {
      fh = await open(file, 'a', 0o600)
    } catch (err) {
      throw new ResumeFileError(`cannot write the resume file ${file}: ${(err as Error).message}`, 'unwritable')
    }
    // A torn last line (a run killed mid-write) is cut off, so that the next line starts on a line of its own.
    const whole = text.endsWith('\n') ? text : text.slice(0, text.lastIndexOf('\n') + 1)
    if (whole !== text) {
      try {
        await fh.truncate(Buffer.byteLength(whole))
      } catch (err) {
        await fh.close()
        throw new ResumeFileError(`cannot write the resume file ${file}: ${(err as Error).message}`, 'unwritable')
      }
    }
    const journal = new ResumeJournal(file, fh, done)
    if (whole.trim() === '') journal.append(`${JSON.stringify({format: RESUME_FORMAT, v: 1, created: new Date().toISOString()})}\n`)
    return journal
  }

  /** The recipient indexes of a message already answered finally in earlier runs (empty when none). */
  doneFor(key: string): ReadonlySet<number> {
    return this.done.get(key) ?? new Set()
  }

  /** Records that these recipients of a message got a final answer. */
  record(key: string, source: string, done: number[]): void {
    if (done.length === 0) return
    const set = this.done.get(key) ?? new Set()
    for (const i of done) set.add(i)
    this.done.set(key, set)
    this.append(`${JSON.stringify({key, source, done, at: new Date().toISOString()})}\n`)
  }

  /** The first write error, if any. */
  get error(): Error | undefined {
    return this.failure
  }

  private append(line: string): void {
    this.pending = this.pending.then(async () => {
      if (this.failure) return
      try {
        await this.fh.write(line)
        this.dirty = true
        this.timer ??= setTimeout(() => void this.sync(), SYNC_EVERY_MS)
      } catch (err) {
        this.failure = err as Error
      }
    })
  }

  private sync(): Promise<void> {
    this.timer = undefined
    this.pending = this.pending.then(async () => {
      if (!this.dirty || this.failure) return
      this.dirty = false
      try {
        await this.fh.sync()
      } catch (err) {
        this.failure = err as Error
      }
    })
    return this.pending
  }

  /** Writes and syncs what is pending, then closes the file. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.timer) clearTimeout(this.timer)
      await this.sync()
      await this.fh.close()
    })()
    return this.closing
  }
}

/** Reads a resume file's text: key -> recipient indexes done. A torn (unparsable) last line is ignored. */
export function parseResumeText(text: string, file: string): Map<string, Set<number>> {
  const done = new Map<string, Set<number>>()
  const lines = text.split('\n')
  const torn = !text.endsWith('\n') ? lines.length - 1 : -1
  lines.forEach((line, i) => {
    if (line.trim() === '') return
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch {
      if (i === torn) return
      if (i === 0) throw notResume(file)
      throw new ResumeFileError(`${file}:${i + 1}: not a JSON line (is this a resume file written by lmtp replay --resume?)`, 'not-resume')
    }
    const v = value as Partial<Entry> & {format?: string}
    if (i === 0) {
      if (v.format !== RESUME_FORMAT) throw notResume(file)
      return
    }
    if (typeof v.key !== 'string' || !Array.isArray(v.done)) {
      if (i === torn) return
      throw new ResumeFileError(`${file}:${i + 1}: not a resume entry`, 'not-resume')
    }
    const set = done.get(v.key) ?? new Set<number>()
    for (const n of v.done) if (Number.isInteger(n)) set.add(n)
    done.set(v.key, set)
  })
  return done
}

function notResume(file: string): ResumeFileError {
  return new ResumeFileError(`${file} is not a resume file written by lmtp replay --resume (give a new file name, or the one an earlier run wrote)`, 'not-resume')
}
