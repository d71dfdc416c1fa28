/**
 * The spool: the body of one transaction on its way in, written once to a temp file under the Maildir root
 * (`ROOT/.lmtp-spool/`, 0700; files 0600) and then copied into each recipient's Maildir. Memory stays bounded:
 * small chunks are batched into large writes, and `write` returns a promise (backpressure) while too much is
 * waiting for the disk. While the bytes stream by, the spool counts what `S=`/`W=` need and notes every
 * `Delivered-To:` address in the header section (loop detection) without a second read.
 */
import type {FileHandle} from 'node:fs/promises'
import * as fsp from 'node:fs/promises'
import path from 'node:path'
import {BackendError, type Spool} from '../protocol/backend.js'
import {R} from '../protocol/replies.js'
import {type BodyStats, CREATE_EXCLUSIVE, DIR_MODE, FILE_MODE, isDiskFullError, makeDirectory, uniqueName, writeAll} from './maildir.js'

/** Collects the addresses of `Delivered-To:` headers from a message's header section, fed in chunks. */
export class DeliveredToScanner {
  /** Addresses found, lower-cased and NFC-normalised. */
  readonly addresses = new Set<string>()
  private doneScanning = false
  private line = ''
  private lineOverflow = false
  private capturing: string | undefined

  /** Longest physical header line kept for inspection; the rest of a longer line is skipped. */
  static readonly MAX_LINE = 2048
  /** Most addresses remembered (a message with more Delivered-To lines than this is odd anyway). */
  static readonly MAX_ADDRESSES = 1000

  /** True once the empty line ending the header section (or a line that is not a header) was seen. */
  get done(): boolean {
    return this.doneScanning
  }

  /** Feeds the next bytes of the message. Cheap once the header section has ended. */
  push(chunk: Buffer): void {
    let pos = 0
    while (!this.doneScanning && pos < chunk.length) {
      const lf = chunk.indexOf(0x0a, pos)
      const end = lf < 0 ? chunk.length : lf
      if (!this.lineOverflow) {
        const room = DeliveredToScanner.MAX_LINE - this.line.length
        if (end - pos > room) this.lineOverflow = true
        this.line += chunk.toString('latin1', pos, pos + Math.min(room, end - pos))
      }
      if (lf < 0) return
      this.takeLine(this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line)
      this.line = ''
      this.lineOverflow = false
      pos = lf + 1
    }
  }

  /** Ends the input (a message without a body). */
  end(): void {
    if (!this.doneScanning && this.line !== '') this.takeLine(this.line)
    this.finishHeader()
    this.doneScanning = true
  }

  private takeLine(line: string): void {
    if (line === '') {
      this.finishHeader()
      this.doneScanning = true
      return
    }
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (this.capturing !== undefined && this.capturing.length < DeliveredToScanner.MAX_LINE) this.capturing += line
      return
    }
    this.finishHeader()
    const colon = line.indexOf(':')
    if (colon <= 0 || /[\s]/.test(line.slice(0, colon).trimEnd())) {
      // Not a header field: the header section is over (RFC 5322 has no other kind of line there).
      this.doneScanning = true
      return
    }
    if (/^delivered-to[ \t]*$/i.test(line.slice(0, colon))) this.capturing = line.slice(colon + 1)
  }

  private finishHeader(): void {
    if (this.capturing === undefined) return
    const value = Buffer.from(this.capturing, 'latin1').toString('utf8').trim()
    this.capturing = undefined
    const angle = /<([^>]*)>/.exec(value)
    const address = (angle ? angle[1]! : (value.split(/\s+/)[0] ?? '')).trim()
    if (address !== '' && this.addresses.size < DeliveredToScanner.MAX_ADDRESSES) {
      this.addresses.add(normaliseAddressForLoop(address))
    }
  }
}

/** The form in which addresses are compared for loop detection: NFC, lower case. */
export function normaliseAddressForLoop(address: string): string {
  return address.normalize('NFC').toLowerCase()
}

/** Options of a file spool. */
export interface FileSpoolOptions {
  /** Directory for spool files (created 0700 when missing). */
  dir: string
  /** Host for the unique file name (default os.hostname()). */
  host?: string
  /** Bytes gathered before one write to the file. Default 256 KiB. */
  batchSize?: number
  /** Bytes waiting for the disk beyond which `write` asks the caller to wait. Default 1 MiB. */
  highWaterMark?: number
  /**
   * Keep a body of up to `batchSize` octets in memory and create the file only when it grows beyond that:
   * most messages then never touch the spool directory (no create, write, read back, unlink), and the
   * Maildir writer takes the body from `body`. Default false (the file is created by open()).
   */
  lazy?: boolean
}

/** Spool directories known to exist (open() creates one only when opening a file in it fails with ENOENT). */
const knownDirs = new Set<string>()

/** First size of the in-memory buffer of a lazy spool; it doubles up to the batch size as the body grows. */
const LAZY_INITIAL = 16 * 1024

/**
 * A Spool backed by a temp file. Besides the Spool contract it exposes the file path, the body statistics and
 * the Delivered-To addresses of the header section, which the Maildir backend uses after `finish()`.
 */
export class FileSpool implements Spool, BodyStats {
  size = 0
  crlfCount = 0
  bareLfCount = 0
  private lastWasCr = false
  private readonly scanner = new DeliveredToScanner()
  private batch: Buffer
  private batchUsed = 0
  private handle: FileHandle | undefined
  /** True once the file was (being) created: the body no longer fits in memory, or the spool is not lazy. */
  private spilled: boolean
  private memoryBody: Buffer | undefined
  private readonly queue: Buffer[] = []
  private queuedBytes = 0
  private flushing: Promise<void> | undefined
  private error: unknown
  private state: 'open' | 'finished' | 'discarded' = 'open'
  private discarding: Promise<void> | undefined
  private readonly batchSize: number
  private readonly highWaterMark: number

  private constructor(
    /** Absolute path of the spool file (a lazy spool creates it only when the body outgrows memory). */
    readonly path: string,
    handle: FileHandle | undefined,
    private readonly dir: string,
    options: FileSpoolOptions,
  ) {
    this.handle = handle
    this.spilled = handle !== undefined
    this.batchSize = options.batchSize ?? 256 * 1024
    this.highWaterMark = Math.max(options.highWaterMark ?? 1024 * 1024, this.batchSize)
    this.batch = Buffer.allocUnsafe(this.spilled ? this.batchSize : Math.min(LAZY_INITIAL, this.batchSize))
  }

  /** A new spool: with `lazy`, nothing on disk yet; otherwise a new exclusive file (and the directory if needed). */
  static async open(options: FileSpoolOptions): Promise<FileSpool> {
    const file = path.join(options.dir, uniqueName(options.host))
    if (options.lazy) return new FileSpool(file, undefined, options.dir, options)
    return new FileSpool(file, await createSpoolFile(options.dir, file), options.dir, options)
  }

  /** The whole body, when a lazy spool finished without needing a file; undefined otherwise. */
  get body(): Buffer | undefined {
    return this.memoryBody
  }

  /** True after a successful finish(). */
  get finished(): boolean {
    return this.state === 'finished'
  }

  /** Addresses of the `Delivered-To:` headers in the message's header section (NFC, lower case). */
  get deliveredTo(): ReadonlySet<string> {
    return this.scanner.addresses
  }

  /** Appends bytes; returns a promise while more than the high-water mark waits for the disk. */
  write(chunk: Buffer): void | Promise<void> {
    if (this.state !== 'open') return Promise.reject(new Error(`spool is ${this.state}: cannot write`))
    if (this.error !== undefined) return Promise.reject(this.error)
    this.count(chunk)
    if (!this.scanner.done) this.scanner.push(chunk)
    let pos = 0
    while (pos < chunk.length) {
      if (this.batchUsed === this.batch.length) this.makeRoom()
      const n = chunk.copy(this.batch, this.batchUsed, pos)
      this.batchUsed += n
      pos += n
      if (this.spilled && this.batchUsed === this.batch.length) this.sealBatch()
    }
    this.kick()
    if (this.queuedBytes >= this.highWaterMark) return this.drain()
  }

  /** Flushes everything written and closes the file. Rejects with the first write error, if any. */
  async finish(): Promise<void> {
    if (this.state !== 'open') throw new Error(`spool is ${this.state}: cannot finish`)
    if (!this.spilled) {
      // The whole body fitted in memory: no file at all.
      this.scanner.end()
      this.state = 'finished'
      this.memoryBody = this.batch.subarray(0, this.batchUsed)
      return
    }
    if (this.batchUsed > 0) this.sealBatch()
    this.kick()
    while (this.flushing) await this.flushing
    if (this.error !== undefined) throw this.error
    this.scanner.end()
    this.state = 'finished'
    await this.handle?.close()
  }

  /** Removes the spool file (waiting for writes in flight first). Safe to call twice and after finish(). */
  discard(): Promise<void> {
    this.discarding ??= (async () => {
      const wasOpen = this.state === 'open'
      this.state = 'discarded'
      this.queue.length = 0
      this.queuedBytes = 0
      while (this.flushing) await this.flushing.catch(() => undefined)
      this.memoryBody = undefined
      if (wasOpen) await this.handle?.close().catch(() => undefined)
      if (!this.spilled) return
      await fsp.unlink(this.path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err
      })
    })()
    return this.discarding
  }

  private count(chunk: Buffer): void {
    this.size += chunk.length
    for (let lf = chunk.indexOf(0x0a); lf >= 0; lf = chunk.indexOf(0x0a, lf + 1)) {
      const cr = lf > 0 ? chunk[lf - 1] === 0x0d : this.lastWasCr
      if (cr) this.crlfCount++
      else this.bareLfCount++
    }
    if (chunk.length > 0) this.lastWasCr = chunk[chunk.length - 1] === 0x0d
  }

  /** The batch is full: a lazy spool still in memory doubles it up to the batch size, else it goes to disk. */
  private makeRoom(): void {
    if (!this.spilled && this.batch.length < this.batchSize) {
      const bigger = Buffer.allocUnsafe(Math.min(this.batch.length * 2, this.batchSize))
      this.batch.copy(bigger, 0, 0, this.batchUsed)
      this.batch = bigger
      return
    }
    this.spilled = true
    this.sealBatch()
  }

  private sealBatch(): void {
    const full = this.batchUsed === this.batch.length ? this.batch : this.batch.subarray(0, this.batchUsed)
    this.queue.push(full)
    this.queuedBytes += full.length
    this.batch = Buffer.allocUnsafe(this.batchSize)
    this.batchUsed = 0
  }

  private kick(): void {
    if (this.flushing || this.queue.length === 0) return
    this.flushing = (async () => {
      try {
        this.handle ??= await createSpoolFile(this.dir, this.path)
        while (this.queue.length > 0) {
          const buf = this.queue[0]!
          await writeAll(this.handle, buf)
          this.queue.shift()
          this.queuedBytes -= buf.length
        }
      } catch (err) {
        // A full disk earns 452 4.3.1 for every recipient rather than the generic 451 4.3.0.
        this.error ??= isDiskFullError(err) ? new BackendError(`spool: ${(err as Error).message}`, R.insufficientStorage) : err
        this.queue.length = 0
        this.queuedBytes = 0
      } finally {
        this.flushing = undefined
      }
    })()
  }

  private async drain(): Promise<void> {
    while (this.flushing && this.queuedBytes >= this.highWaterMark) await this.flushing
    if (this.error !== undefined) throw this.error
  }
}

/** Creates a spool file exclusively; the directory (0700) is made only when it is missing. */
async function createSpoolFile(dir: string, file: string): Promise<FileHandle> {
  if (knownDirs.has(dir)) {
    try {
      return await fsp.open(file, CREATE_EXCLUSIVE, FILE_MODE)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  await makeDirectory(dir, DIR_MODE)
  if (knownDirs.size > 1000) knownDirs.clear()
  knownDirs.add(dir)
  return fsp.open(file, CREATE_EXCLUSIVE, FILE_MODE)
}
