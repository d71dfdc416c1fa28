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
import {type BodyStats, CREATE_EXCLUSIVE, DIR_MODE, FILE_MODE, isDiskFullError, uniqueName, writeAll} from './maildir.js'

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
}

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
  private readonly queue: Buffer[] = []
  private queuedBytes = 0
  private flushing: Promise<void> | undefined
  private error: unknown
  private state: 'open' | 'finished' | 'discarded' = 'open'
  private discarding: Promise<void> | undefined
  private readonly batchSize: number
  private readonly highWaterMark: number

  private constructor(
    /** Absolute path of the spool file. */
    readonly path: string,
    private readonly handle: FileHandle,
    options: FileSpoolOptions,
  ) {
    this.batchSize = options.batchSize ?? 256 * 1024
    this.highWaterMark = Math.max(options.highWaterMark ?? 1024 * 1024, this.batchSize)
    this.batch = Buffer.allocUnsafe(this.batchSize)
  }

  /** Creates the spool directory if needed and a new exclusive spool file in it. */
  static async open(options: FileSpoolOptions): Promise<FileSpool> {
    await fsp.mkdir(options.dir, {recursive: true, mode: DIR_MODE})
    const file = path.join(options.dir, uniqueName(options.host))
    const handle = await fsp.open(file, CREATE_EXCLUSIVE, FILE_MODE)
    return new FileSpool(file, handle, options)
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
      const n = chunk.copy(this.batch, this.batchUsed, pos)
      this.batchUsed += n
      pos += n
      if (this.batchUsed === this.batch.length) this.sealBatch()
    }
    this.kick()
    if (this.queuedBytes >= this.highWaterMark) return this.drain()
  }

  /** Flushes everything written and closes the file. Rejects with the first write error, if any. */
  async finish(): Promise<void> {
    if (this.state !== 'open') throw new Error(`spool is ${this.state}: cannot finish`)
    if (this.batchUsed > 0) this.sealBatch()
    this.kick()
    while (this.flushing) await this.flushing
    if (this.error !== undefined) throw this.error
    this.scanner.end()
    this.state = 'finished'
    await this.handle.close()
  }

  /** Removes the spool file (waiting for writes in flight first). Safe to call twice and after finish(). */
  discard(): Promise<void> {
    this.discarding ??= (async () => {
      const wasOpen = this.state === 'open'
      this.state = 'discarded'
      this.queue.length = 0
      this.queuedBytes = 0
      while (this.flushing) await this.flushing.catch(() => undefined)
      if (wasOpen) await this.handle.close().catch(() => undefined)
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
