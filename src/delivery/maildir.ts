/**
 * Writing one message into one Maildir (cr.yp.to/proto/maildir.html), durably: unique name, exclusive create in
 * tmp/ (never following a planted symlink), trace headers, the body streamed from the spool with CRLF turned
 * into LF (the Maildir convention) in bounded memory, fsync, rename into new/, fsync of new/. Only when
 * writeMaildirMessage resolves is the message on disk; on any failure the temp file is removed and the error
 * (with its errno code) is rethrown for the caller to map to a 4xx reply.
 */
import {createHash, randomBytes} from 'node:crypto'
import {constants, readFileSync, statSync} from 'node:fs'
import * as fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

/** The part of a file handle the writer uses (node's FileHandle fits; tests substitute failing ones). */
export interface FileLike {
  write(buffer: Buffer, offset: number, length: number): Promise<{bytesWritten: number}>
  read(buffer: Buffer, offset: number, length: number, position: number | null): Promise<{bytesRead: number}>
  sync(): Promise<void>
  close(): Promise<void>
  /** fchown (node's FileHandle has it); needed only for mailboxes with an owner. */
  chown?(uid: number, gid: number): Promise<void>
}

/** The file system operations delivery uses: a seam so tests can inject ENOSPC, EDQUOT or EIO. */
export interface MaildirFs {
  open(file: string, flags: number, mode?: number): Promise<FileLike>
  rename(from: string, to: string): Promise<void>
  unlink(file: string): Promise<void>
  mkdir(dir: string, options: {recursive: boolean; mode: number}): Promise<unknown>
}

/** The real file system (node:fs/promises). */
export const realFs: MaildirFs = {
  open: (file, flags, mode) => fsp.open(file, flags, mode),
  rename: (from, to) => fsp.rename(from, to),
  unlink: (file) => fsp.unlink(file),
  mkdir: (dir, options) => fsp.mkdir(dir, options),
}

/** Flags for creating a temp file: exclusive, write-only, never through a symlink. */
export const CREATE_EXCLUSIVE = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW

/** Flags for opening a directory to fchown or pin it: never through a symlink in its last component. */
export const OPEN_DIRECTORY = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW

/**
 * The owner given to the files and directories created for one mailbox (users file `uid=` / `gid=`); -1 leaves
 * that id as the process's.
 */
export interface MailboxOwner {
  uid: number
  gid: number
}

/** Directory mode of tmp/, new/, cur/ and any parent the writer creates. */
export const DIR_MODE = 0o700
/** Mode of message files and spool files. */
export const FILE_MODE = 0o600

/** Chunk size for streaming the spool into a Maildir file. */
export const COPY_CHUNK = 64 * 1024

/**
 * Encodes a host name for a Maildir unique name: `/` -> `\057`, `:` -> `\072` (the Maildir rules), and also
 * `,` -> `\054` (commas start the `,S=` / `,W=` fields Dovecot reads) and `\` and control characters as octal.
 */
export function encodeHostForMaildir(host: string): string {
  let out = ''
  for (const ch of host === '' ? 'localhost' : host) {
    const cp = ch.codePointAt(0)!
    if (ch === '/' || ch === ':' || ch === ',' || ch === '\\' || cp < 0x20 || cp === 0x7f) {
      out += `\\${cp.toString(8).padStart(3, '0')}`
    } else {
      out += ch
    }
  }
  return out
}

let counter = 0

/**
 * A new unique base name: `<sec>.M<usec>P<pid>Q<counter>R<random hex>.<host>`. The seconds, microseconds, pid
 * and per-process counter make it unique on this host; the random part and host make it unique across hosts
 * sharing the Maildir (NFS). `host` defaults to os.hostname().
 */
export function uniqueName(host: string = os.hostname(), now: number = Date.now() * 1000 + microJitter()): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER
  const sec = Math.floor(now / 1_000_000)
  const usec = now % 1_000_000
  const space = processSpace()
  return `${sec}.M${usec}${space ? `N${space}` : ''}P${process.pid}Q${counter}R${randomBytes(8).toString('hex')}.${encodeHostForMaildir(host)}`
}

let cachedSpace: string | undefined

/**
 * This boot of this host and this pid namespace, as 8 hex digits (a hash of the kernel's boot_id and the inode
 * of /proc/self/ns/pid), written as `N<space>` in unique names: a pid in a name can be proven dead only by a
 * process in the same space. Two containers sharing a host name (host networking) differ here. '' when /proc
 * cannot tell, and then no name is ever removed for its pid.
 */
export function processSpace(): string {
  if (cachedSpace === undefined) {
    try {
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
      const ns = statSync('/proc/self/ns/pid').ino
      cachedSpace = createHash('sha256').update(`${boot}:${ns}`).digest('hex').slice(0, 8)
    } catch {
      cachedSpace = ''
    }
  }
  return cachedSpace
}

/** Microseconds within the current millisecond, from the high-resolution clock. */
function microJitter(): number {
  return Number(process.hrtime.bigint() / 1000n) % 1000
}

/** Fields of a unique name written by uniqueName (for cleanTmp and quota recalculation). */
export interface UniqueNameParts {
  seconds: number
  pid: number
  /** The host as encoded in the name. */
  host: string
  /** The boot and pid namespace of the writer (see processSpace); absent in names without it. */
  space?: string
  /** `S=` size when present. */
  size?: number
}

/** Parses a name written by uniqueName (with or without `,S=,W=` and `:2,` info); undefined for other names. */
export function parseUniqueName(name: string): UniqueNameParts | undefined {
  const m = /^(\d+)\.M\d+(?:N([0-9a-f]+))?P(\d+)Q\d+R[0-9a-f]+\.([^,:]+)((?:,[^:]*)?)(?::.*)?$/.exec(name)
  if (!m) return undefined
  const size = /,S=(\d+)/.exec(m[5] ?? '')
  return {
    seconds: Number(m[1]),
    space: m[2],
    pid: Number(m[3]),
    host: m[4]!,
    size: size ? Number(size[1]) : undefined,
  }
}

/**
 * Removes control characters (CR, LF, NUL, C1...) and the Unicode line and paragraph separators (U+2028,
 * U+2029: line breaks to JavaScript and some mail tools) from a header value and caps its length.
 */
export function sanitizeHeaderText(text: string, max = 512): string {
  const clean = text.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, '?')
  return clean.length > max ? `${clean.slice(0, max)}...` : clean
}

/** Keeps only characters that are safe in a Received token (host names, literals, peers, ids); others -> `?`. */
export function sanitizeToken(text: string, max = 255): string {
  const clean = text.replace(/[^\p{L}\p{M}\p{N}.\-_:[\]@+]/gu, '?')
  const capped = clean.length > max ? `${clean.slice(0, max)}...` : clean
  return capped === '' ? 'unknown' : capped
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/** Formats a date as RFC 5322 `date-time` in local time, e.g. `Sat, 29 Nov 2025 01:35:58 +0100`. */
export function formatRfc5322Date(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0')
  const offset = -d.getTimezoneOffset()
  const sign = offset >= 0 ? '+' : '-'
  const abs = Math.abs(offset)
  return (
    `${DAYS[d.getDay()]}, ${d.getDate()} ${MONTHS[d.getMonth()]} ${d.getFullYear()} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`
  )
}

/** What the trace headers say about one delivery. */
export interface TraceInfo {
  /** Envelope sender address (`''` for the null sender). */
  sender: string
  /** This recipient's address as given at RCPT. */
  recipient: string
  /** LHLO argument of the client. */
  lhlo: string
  /** Peer (`127.0.0.1:51234`, `unix`). */
  peer: string
  /** Our host name. */
  hostname: string
  transactionId: string
  /** SMTPUTF8 was used: protocol UTF8LMTP (RFC 6531). */
  smtputf8: boolean
  /** TLS was active: protocol ...LMTPS (RFC 3848). */
  tls: boolean
  date?: Date
}

/**
 * The headers prepended to a delivered message: `Return-Path`, `Delivered-To` and `Received`, LF line ends,
 * folded with a tab. Every value is sanitised so nothing from the client can add a header line.
 */
export function buildTraceHeaders(t: TraceInfo): string {
  const protocol = `${t.smtputf8 ? 'UTF8' : ''}LMTP${t.tls ? 'S' : ''}`
  const recipient = sanitizeHeaderText(t.recipient).replace(/[<>]/g, '?')
  const sender = sanitizeHeaderText(t.sender).replace(/[<>]/g, '?')
  return (
    `Return-Path: <${sender}>\n` +
    `Delivered-To: ${recipient}\n` +
    `Received: from ${sanitizeToken(t.lhlo)} (${sanitizeToken(t.peer)})\n` +
    `\tby ${sanitizeToken(t.hostname)} with ${protocol} id ${sanitizeToken(t.transactionId)}\n` +
    `\tfor <${recipient}>; ${formatRfc5322Date(t.date ?? new Date())}\n`
  )
}

/**
 * Streaming CRLF -> LF conversion that is correct when a CR ends one chunk and its LF starts the next. Bare CR
 * and bare LF pass through unchanged.
 */
export class CrlfToLf {
  private pendingCr = false

  /** Converts `input` into `out` (which must hold `input.length + 1` bytes); returns the bytes written. */
  push(input: Buffer, out: Buffer): number {
    let o = 0
    let i = 0
    if (this.pendingCr && input.length > 0) {
      this.pendingCr = false
      if (input[0] === 0x0a) {
        out[o++] = 0x0a
        i = 1
      } else {
        out[o++] = 0x0d
      }
    }
    while (i < input.length) {
      const cr = input.indexOf(0x0d, i)
      if (cr < 0) {
        o += input.copy(out, o, i)
        break
      }
      o += input.copy(out, o, i, cr)
      if (cr === input.length - 1) {
        this.pendingCr = true
        break
      }
      if (input[cr + 1] === 0x0a) {
        out[o++] = 0x0a
        i = cr + 2
      } else {
        out[o++] = 0x0d
        i = cr + 1
      }
    }
    return o
  }

  /** Flushes a CR held back at the end of the input; returns the bytes written to `out`. */
  end(out: Buffer): number {
    if (!this.pendingCr) return 0
    this.pendingCr = false
    out[0] = 0x0d
    return 1
  }
}

/** Writes all of `buf[offset, offset+length)`, looping over short writes; a zero-byte write is an error. */
export async function writeAll(file: FileLike, buf: Buffer, offset = 0, length = buf.length - offset): Promise<void> {
  let done = 0
  while (done < length) {
    const {bytesWritten} = await file.write(buf, offset + done, length - done)
    if (bytesWritten <= 0) {
      const err: NodeJS.ErrnoException = new Error('short write: the file system accepted no bytes')
      err.code = 'EIO'
      throw err
    }
    done += bytesWritten
  }
}

/** fsyncs a directory so that a rename into it survives a crash. */
export async function fsyncDir(dir: string, fs: MaildirFs = realFs): Promise<void> {
  const h = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await h.sync()
  } finally {
    // Closing a directory handle cannot lose anything: the caller need not wait for it.
    void h.close().catch(() => undefined)
  }
}

/** Directory fsyncs in progress (and the one queued behind each) per file system seam and directory. */
const dirSyncs = new WeakMap<MaildirFs, Map<string, {running?: Promise<void>; queued?: Promise<void>}>>()

/**
 * Group commit of directory fsyncs: resolves once an fsync of `dir` that STARTED after this call has finished,
 * so a rename done before the call is durable. Concurrent callers share one fsync: while one is running, every
 * newcomer waits for the single next one (which starts when the running one ends). Under load, deliveries into
 * the same new/ then cost one directory fsync per batch instead of one each, and every caller still waits for
 * its own durability.
 */
export function fsyncDirGrouped(dir: string, fs: MaildirFs = realFs): Promise<void> {
  let byDir = dirSyncs.get(fs)
  if (!byDir) dirSyncs.set(fs, (byDir = new Map()))
  let state = byDir.get(dir)
  if (!state) byDir.set(dir, (state = {}))
  const s = state
  const start = (): Promise<void> => {
    const p: Promise<void> = fsyncDir(dir, fs).finally(() => {
      if (s.running === p) s.running = undefined
      if (!s.running && !s.queued) byDir.delete(dir)
    })
    s.running = p
    return p
  }
  if (!s.running) return start()
  s.queued ??= s.running
    .catch(() => undefined)
    .then(() => {
      s.queued = undefined
      return start()
    })
  return s.queued
}

const ensured = new Set<string>()

/**
 * Creates `tmp/`, `new/` and `cur/` of a Maildir (and missing parents) with mode 0700. With an owner, the
 * folders created here and the Maildir directory itself (when created here) are given to it through an fd (see
 * chownDirectory): the folders first, the Maildir directory last, so that until the end nobody but us can
 * write in it. Parents above the Maildir (the domain directory) stay the process's.
 */
export async function ensureMaildir(dir: string, fs: MaildirFs = realFs, owner?: MailboxOwner): Promise<void> {
  const created: string[] = []
  let maildirCreated = false
  for (const sub of ['tmp', 'new', 'cur']) {
    const full = path.join(dir, sub)
    const first = await makeDirectory(full, DIR_MODE, fs)
    if (first === undefined) continue
    created.push(full)
    if (path.resolve(first) !== path.resolve(full)) maildirCreated = true
  }
  if (owner) {
    for (const d of created) await chownDirectory(d, owner, fs)
    if (maildirCreated) await chownDirectory(dir, owner, fs)
  }
  if (ensured.size > 10_000) ensured.clear()
  ensured.add(dir)
}

/**
 * Gives a directory to `owner` through a descriptor opened O_DIRECTORY|O_NOFOLLOW: a symlink put in its place
 * is refused (ELOOP or ENOTDIR), never followed, and the chown hits exactly the directory opened.
 */
export async function chownDirectory(dir: string, owner: MailboxOwner, fs: MaildirFs = realFs): Promise<void> {
  const h = await fs.open(dir, OPEN_DIRECTORY)
  try {
    await chownFile(h, owner, dir)
  } finally {
    await h.close()
  }
}

/** fchown of an open file or directory (`what` names it in the error when the seam cannot chown). */
export async function chownFile(h: FileLike, owner: MailboxOwner, what: string): Promise<void> {
  if (!h.chown) throw new Error(`cannot give ${what} to uid ${owner.uid} gid ${owner.gid}: this file system seam has no chown`)
  await h.chown(owner.uid, owner.gid)
}

/**
 * A directory held open (O_DIRECTORY|O_NOFOLLOW), named by `/proc/self/fd/N`: a create or rename through that
 * name lands in the directory that was opened even if its path is swapped for a symlink meanwhile (openat and
 * renameat without native code; Linux). Used wherever the mailbox's owner could make such a swap.
 */
export interface PinnedDirectory {
  /** `/proc/self/fd/N`: join names to it. */
  readonly path: string
  close(): Promise<void>
}

/** Opens `dir` as a {@link PinnedDirectory}; ELOOP or ENOTDIR when it is a symlink or not a directory. */
export async function pinDirectory(dir: string): Promise<PinnedDirectory> {
  const h = await fsp.open(dir, OPEN_DIRECTORY)
  return {path: `/proc/self/fd/${h.fd}`, close: () => h.close()}
}

/**
 * `mkdir -p` that reports why a directory could not be made. Node's asynchronous recursive mkdir answers ENOENT
 * when a level cannot be created for lack of inodes (the real ENOSPC is lost); then the levels are made one by
 * one from the top, so the error thrown is the real one and "out of inodes" earns 452 4.3.1 like a full disk.
 */
export async function makeDirectory(dir: string, mode: number, fs: MaildirFs = realFs): Promise<string | undefined> {
  try {
    const first = await fs.mkdir(dir, {recursive: true, mode})
    return typeof first === 'string' ? first : undefined
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err
    const levels: string[] = []
    for (let d = path.resolve(dir); path.dirname(d) !== d; d = path.dirname(d)) levels.unshift(d)
    // Plain mkdir, level by level: the one that cannot be made fails with its own errno.
    let first: string | undefined
    for (const level of levels) {
      const made = await fs.mkdir(level, {recursive: false, mode}).then(
        () => true,
        (e: unknown) => {
          if (!isErrno(e, 'EEXIST')) throw e
          return false
        },
      )
      if (made) first ??= level
    }
    return first
  }
}

/** Line statistics of a body with CRLF line ends, as counted by the spool (used for `S=` and `W=`). */
export interface BodyStats {
  /** Octets as received. */
  size: number
  /** CRLF pairs (each stored as one LF). */
  crlfCount: number
  /** LF not preceded by CR (stored as is). */
  bareLfCount: number
}

/** Size of the stored file (`S=`) and its size with CRLF line ends (`W=`) for a body and its added headers. */
export function storedSizes(headers: string, body: BodyStats): {size: number; virtualSize: number} {
  const headerBytes = Buffer.byteLength(headers, 'utf8')
  let headerLf = 0
  for (let i = headers.indexOf('\n'); i >= 0; i = headers.indexOf('\n', i + 1)) headerLf++
  const size = headerBytes + body.size - body.crlfCount
  return {size, virtualSize: size + headerLf + body.crlfCount + body.bareLfCount}
}

/** What to write where. */
export interface MaildirWrite {
  /** The Maildir directory (holding tmp/, new/, cur/); created when missing. */
  dir: string
  /** Trace headers (LF line ends), see buildTraceHeaders. */
  headers: string
  /** Path of the spool file holding the body with CRLF line ends (ignored when `body` is given). */
  source: string
  /** The body with CRLF line ends, when the spool kept it in memory (no spool file to read). */
  body?: Buffer
  /** Statistics of the spool file. */
  stats: BodyStats
  /** Host for the unique name (default os.hostname()). */
  host?: string
  /** File system seam (default: the real one). */
  fs?: MaildirFs
  /** Unique base name factory (tests use it to plant a file at the name). */
  nameFactory?: () => string
  /**
   * Runs the rename into new/ once the temp file is complete and fsync'd, with the stored size: quota
   * accounting wraps the rename here, under the mailbox's lock, so that "counted in maildirsize" and "present in
   * new/" change together for every other process (a crash inside leaves the temp file behind, which tells
   * cleanTmp that the accounting of this Maildir cannot be trusted). It may refuse by throwing; the temp file is
   * then removed. Default: just `rename()`.
   */
  commit?: (size: number, rename: () => Promise<void>) => Promise<void>
  /**
   * Runs the removal of a renamed message whose directory fsync failed (the 4xx that follows must not leave a
   * duplicate behind), so that quota accounting can take it back under the same lock. Default: `unlink()`.
   */
  uncommit?: (size: number, unlink: () => Promise<void>) => Promise<void>
  /**
   * Owner of this mailbox (users file `uid=` / `gid=`): the Maildir folders created and the message file are
   * given to it (fchown of the O_EXCL|O_NOFOLLOW temp file before its rename), and tmp/ and new/ are pinned
   * (see PinnedDirectory) so that the owner cannot redirect the create or the rename with a symlink.
   */
  owner?: MailboxOwner
}

/** Where a message was stored. */
export interface MaildirWriteResult {
  /** Absolute path of the file in new/. */
  file: string
  /** File name (`<unique>,S=<size>,W=<virtual size>`). */
  name: string
  /** Octets stored (`S=`). */
  size: number
  /** Octets with CRLF line ends (`W=`). */
  virtualSize: number
  /** Milliseconds spent waiting for the file's fsync and new/'s fsync. */
  fsyncMs: number
}

/** A write or fsync error names no file: give it the one it was about (for the log's cause). */
function withPath(err: unknown, file: string): unknown {
  const e = err as NodeJS.ErrnoException | undefined
  if (e && typeof e === 'object' && e.code && !e.path) e.path = file
  return err
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code
}

/**
 * Delivers one message into a Maildir durably (see the module comment). Resolves only after the file and new/
 * are fsync'd; rejects with the underlying error (its `code` tells ENOSPC/EDQUOT from the rest) after removing
 * whatever it had written.
 */
export async function writeMaildirMessage(w: MaildirWrite): Promise<MaildirWriteResult> {
  const fs = w.fs ?? realFs
  if (!ensured.has(w.dir)) await ensureMaildir(w.dir, fs, w.owner)
  if (!w.owner) return writeMessage(w, fs, path.join(w.dir, 'tmp'), path.join(w.dir, 'new'))
  const pins: PinnedDirectory[] = []
  try {
    for (const sub of ['tmp', 'new']) {
      pins.push(
        await pinDirectory(path.join(w.dir, sub)).catch(async (err: unknown) => {
          if (!isErrno(err, 'ENOENT')) throw err
          await ensureMaildir(w.dir, fs, w.owner)
          return pinDirectory(path.join(w.dir, sub))
        }),
      )
    }
    return await writeMessage(w, fs, pins[0]!.path, pins[1]!.path)
  } finally {
    for (const p of pins) await p.close().catch(() => undefined)
  }
}

/** writeMaildirMessage into the folders `tmpDir` and `newDir` (paths, or pinned directories). */
async function writeMessage(w: MaildirWrite, fs: MaildirFs, tmpDir: string, newDir: string): Promise<MaildirWriteResult> {
  const {size, virtualSize} = storedSizes(w.headers, w.stats)
  const base = w.nameFactory ? w.nameFactory() : uniqueName(w.host)
  const name = `${base},S=${size},W=${virtualSize}`
  const tmpFile = path.join(tmpDir, name)
  const newFile = path.join(newDir, name)

  let out: FileLike
  try {
    out = await fs.open(tmpFile, CREATE_EXCLUSIVE, FILE_MODE)
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err
    // Someone removed the Maildir since we last created it.
    await ensureMaildir(w.dir, fs, w.owner)
    out = await fs.open(tmpFile, CREATE_EXCLUSIVE, FILE_MODE)
  }

  let open = true
  let fsyncMs = 0
  let closing: Promise<void> | undefined
  try {
    // Given to the mailbox's owner through the descriptor, before anyone can see it in new/.
    if (w.owner) await chownFile(out, w.owner, tmpFile)
    let written: number
    if (w.body) {
      // Small message: headers and converted body in one buffer, one write.
      const headerLen = Buffer.byteLength(w.headers, 'utf8')
      const buf = Buffer.allocUnsafe(headerLen + w.body.length + 1)
      buf.write(w.headers, 0, 'utf8')
      const conv = new CrlfToLf()
      written = headerLen + conv.push(w.body, buf.subarray(headerLen))
      written += conv.end(buf.subarray(written))
      await writeAll(out, buf, 0, written)
    } else {
      written = await copySpool(w, fs, out)
    }
    if (written !== size) {
      const err: NodeJS.ErrnoException = new Error(`spool changed under us: wrote ${written} octets, expected ${size}`)
      err.code = 'EIO'
      throw err
    }
    const syncStart = performance.now()
    await out.sync()
    fsyncMs = performance.now() - syncStart
    open = false
    // The data is on disk: the close runs alongside the rename and the directory fsync (one wait fewer per
    // delivery); its outcome is still checked before the message counts as delivered.
    closing = out.close()
    closing.catch(() => undefined)
  } catch (err) {
    if (open) await out.close().catch(() => undefined)
    await fs.unlink(tmpFile).catch(() => undefined)
    throw withPath(err, tmpFile)
  }

  const rename = async (): Promise<void> => {
    try {
      await fs.rename(tmpFile, newFile)
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
      await ensureMaildir(w.dir, fs, w.owner)
      await fs.rename(tmpFile, newFile)
    }
  }
  try {
    await (w.commit ? w.commit(size, rename) : rename())
  } catch (err) {
    await fs.unlink(tmpFile).catch(() => undefined)
    throw err
  }
  try {
    const dirSyncStart = performance.now()
    await fsyncDirGrouped(path.join(w.dir, 'new'), fs)
    fsyncMs += performance.now() - dirSyncStart
    await closing
  } catch (err) {
    // Not known to be durable: take it back so that the 4xx (and the client's retry) does not duplicate it.
    const unlink = () => fs.unlink(newFile).catch(() => undefined)
    await (w.uncommit ? w.uncommit(size, unlink) : unlink()).catch(() => undefined)
    throw err
  }
  return {file: path.join(w.dir, 'new', name), name, size, virtualSize, fsyncMs}
}

/** Streams the spool file (CRLF) into `out` as LF in bounded memory, after the headers; returns octets written. */
async function copySpool(w: MaildirWrite, fs: MaildirFs, out: FileLike): Promise<number> {
  const headerBuf = Buffer.from(w.headers, 'utf8')
  await writeAll(out, headerBuf)
  let written = headerBuf.length
  const input = await fs.open(w.source, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    const inBuf = Buffer.allocUnsafe(COPY_CHUNK)
    const outBuf = Buffer.allocUnsafe(COPY_CHUNK + 1)
    const conv = new CrlfToLf()
    for (;;) {
      const {bytesRead} = await input.read(inBuf, 0, COPY_CHUNK, null)
      if (bytesRead === 0) break
      const n = conv.push(inBuf.subarray(0, bytesRead), outBuf)
      await writeAll(out, outBuf, 0, n)
      written += n
    }
    const n = conv.end(outBuf)
    if (n > 0) {
      await writeAll(out, outBuf, 0, n)
      written += n
    }
  } finally {
    await input.close()
  }
  return written
}

/** True for the errors that mean "no space": ENOSPC (disk full) and EDQUOT (file system quota). */
export function isDiskFullError(err: unknown): boolean {
  return isErrno(err, 'ENOSPC') || isErrno(err, 'EDQUOT')
}
