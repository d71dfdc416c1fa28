/**
 * `lmtp serve --metrics HOST:PORT`: Prometheus metrics (text format, prom-client) and `/healthz`, on a small
 * HTTP listener of its own. The metrics listen to the event bus like every other observer; the file-system
 * gauges (free space and inodes of the Maildir) and the certificate's expiry are read at scrape time.
 */
import {X509Certificate} from 'node:crypto'
import type {StatsFs} from 'node:fs'
import {constants} from 'node:fs'
import {mkdir, open, statfs, unlink} from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'
import {Counter, Gauge, Histogram, Registry, collectDefaultMetrics} from 'prom-client'
import type {EventBus} from '../protocol/events.js'
import type {ServerTotals} from '../protocol/totals.js'

/** What the metrics read from the running server. */
export interface MetricsSources {
  bus: EventBus
  /** The server's totals (one source: ServerStats), read at scrape time. */
  totals: () => ServerTotals
  /** The Maildir root (free space, inodes, writability). */
  maildir: string
  /** Every listener with whether it is accepting connections now. */
  listeners: () => {address: string; up: boolean}[]
  /** The TLS certificate in use (PEM), if any; read at each scrape so a reload shows. */
  certificate?: () => Buffer | undefined
}

/** Quota refusals are these enhanced codes (mailbox full, message larger than the quota). */
const QUOTA_CODES = new Set(['4.2.2', '5.2.2', '5.2.3'])

/** Seconds buckets for delivery (end of data to reply) and fsync latency. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** The server's Prometheus registry, fed from the bus. */
export class ServerMetrics {
  readonly registry = new Registry()
  /** Counts /healthz checks, naming each one's probe file. */
  private healthChecks = 0
  /** Stops listening to the bus. */
  readonly detach: () => void

  constructor(private readonly s: MetricsSources) {
    const registers = [this.registry]
    collectDefaultMetrics({register: this.registry})
    const deliveries = new Counter({
      name: 'lmtp_deliveries_total',
      help: 'Per-recipient replies after the body, by outcome (delivered, deferred, rejected) and enhanced code',
      labelNames: ['outcome', 'enhanced'] as const,
      registers,
    })
    const refusals = new Counter({
      name: 'lmtp_rcpt_refusals_total',
      help: 'Recipients refused at RCPT time, by reply code and enhanced code',
      labelNames: ['code', 'enhanced'] as const,
      registers,
    })
    const quota = new Counter({
      name: 'lmtp_quota_refusals_total',
      help: 'Recipients refused because of their quota, at RCPT or after the body',
      labelNames: ['stage'] as const,
      registers,
    })
    const sessionsClosed = new Counter({
      name: 'lmtp_sessions_closed_total',
      help: 'Sessions closed, by how they ended',
      labelNames: ['reason'] as const,
      registers,
    })
    const deliveryLatency = new Histogram({
      name: 'lmtp_delivery_duration_seconds',
      help: 'Time from the end of the body to a recipient\'s reply',
      buckets: LATENCY_BUCKETS,
      registers,
    })
    const fsyncLatency = new Histogram({
      name: 'lmtp_fsync_duration_seconds',
      help: 'Time spent in fsync (file and new/ directory) per stored message',
      buckets: LATENCY_BUCKETS,
      registers,
    })
    const totals = s.totals
    new Gauge({
      name: 'lmtp_sessions_open',
      help: 'Sessions open now',
      registers,
      collect() {
        this.set(totals().openSessions)
      },
    })
    new Counter({
      name: 'lmtp_sessions_total',
      help: 'Sessions accepted since start',
      registers,
      collect() {
        this.reset()
        this.inc(totals().connections)
      },
    })
    new Counter({
      name: 'lmtp_messages_total',
      help: 'Message bodies received in full',
      registers,
      collect() {
        this.reset()
        this.inc(totals().messages)
      },
    })
    new Counter({
      name: 'lmtp_received_bytes_total',
      help: 'Octets of message bodies received',
      registers,
      collect() {
        this.reset()
        this.inc(totals().bytes)
      },
    })
    const maildir = s.maildir
    const fsGauge = (name: string, help: string, read: (st: StatsFs) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          try {
            this.set(read(await statfs(maildir)))
          } catch {
            this.reset()
          }
        },
      })
    }
    fsGauge('lmtp_maildir_free_bytes', 'Bytes available to unprivileged users on the Maildir file system', (st) => st.bavail * st.bsize)
    fsGauge('lmtp_maildir_size_bytes', 'Size of the Maildir file system', (st) => st.blocks * st.bsize)
    fsGauge('lmtp_maildir_free_inodes', 'Free inodes on the Maildir file system', (st) => st.ffree)
    fsGauge('lmtp_maildir_inodes', 'Inodes of the Maildir file system', (st) => st.files)
    const certificate = s.certificate
    // Only a server started with TLS has (and keeps, across reloads) a certificate.
    if (certificate?.()) {
      new Gauge({
        name: 'lmtp_tls_certificate_expiry_timestamp_seconds',
        help: 'When the STARTTLS certificate expires (Unix time)',
        registers,
        collect() {
          const pem = certificate()
          if (!pem) return
          try {
            this.set(Math.floor(Date.parse(new X509Certificate(pem).validTo) / 1000))
          } catch {
            this.reset()
          }
        },
      })
    }
    this.detach = s.bus.on((e) => {
      switch (e.type) {
        case 'recipient.result':
          deliveries.inc({outcome: e.outcome, enhanced: e.enhanced ?? ''})
          deliveryLatency.observe(e.latencyMs / 1000)
          if (e.fsyncMs !== undefined) fsyncLatency.observe(e.fsyncMs / 1000)
          if (e.enhanced && QUOTA_CODES.has(e.enhanced)) quota.inc({stage: 'DATA'})
          return
        case 'recipient.rejected':
          refusals.inc({code: String(e.code), enhanced: e.enhanced ?? ''})
          if (e.enhanced && QUOTA_CODES.has(e.enhanced)) quota.inc({stage: 'RCPT'})
          return
        case 'session.closed':
          sessionsClosed.inc({reason: e.end ?? 'unknown'})
          return
        default:
          return
      }
    })
  }

  /**
   * Whether the server can take mail: every listener up and a file can be created in the Maildir (its spool
   * directory). The reason says what is wrong.
   */
  async health(): Promise<{ok: boolean; reason: string}> {
    const listeners = this.s.listeners()
    if (listeners.length === 0) return {ok: false, reason: 'no listener is up'}
    const down = listeners.filter((l) => !l.up).map((l) => l.address)
    if (down.length > 0) return {ok: false, reason: `listener down: ${down.join(', ')}`}
    const dir = path.join(this.s.maildir, '.lmtp-spool')
    // A name of its own per check (concurrent checkers must not unlink each other's), created O_EXCL|O_NOFOLLOW.
    const probe = path.join(dir, `healthz.${process.pid}.${++this.healthChecks}`)
    try {
      await mkdir(dir, {recursive: true, mode: 0o700})
      const fh = await open(probe, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600)
      await fh.close()
      await unlink(probe)
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      return {ok: false, reason: `Maildir not writable: ${e.code ?? 'error'} ${e.path ?? dir}`}
    }
    return {ok: true, reason: `ok: ${listeners.length} listener(s) up, Maildir writable`}
  }
}

/** The metrics HTTP listener. */
export interface MetricsEndpoint {
  /** `HOST:PORT` actually bound (the real port when 0 was asked for). */
  address: string
  port: number
  close(): Promise<void>
}

/** A failure to bind the metrics listener; the message says what to do. */
export class MetricsListenError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message)
    this.name = 'MetricsListenError'
  }
}

/** Serves `GET /metrics` (Prometheus text format) and `GET /healthz` (200 or 503 with the reason). */
export async function openMetricsEndpoint(host: string, port: number, metrics: ServerMetrics): Promise<MetricsEndpoint> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?', 1)[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, {allow: 'GET, HEAD'}).end()
      return
    }
    if (url === '/metrics') {
      metrics.registry.metrics().then(
        (body) => res.writeHead(200, {'content-type': metrics.registry.contentType}).end(body),
        (err: Error) => res.writeHead(500, {'content-type': 'text/plain'}).end(`${err.message}\n`),
      )
      return
    }
    if (url === '/healthz') {
      metrics.health().then((h) => res.writeHead(h.ok ? 200 : 503, {'content-type': 'text/plain'}).end(`${h.reason}\n`))
      return
    }
    res.writeHead(404, {'content-type': 'text/plain'}).end('not found: try /metrics or /healthz\n')
  })
  server.keepAliveTimeout = 5_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const where = `${host}:${port}`
      reject(
        new MetricsListenError(
          err.code === 'EADDRINUSE'
            ? `--metrics ${where} is already in use: choose another port`
            : `--metrics cannot listen on ${where}: ${err.message}`,
          err.code ?? 'EIO',
        ),
      )
    })
    server.listen(port, host, () => resolve())
  })
  server.on('error', () => {})
  const bound = (server.address() as import('node:net').AddressInfo).port
  return {
    address: `${host.includes(':') ? `[${host}]` : host}:${bound}`,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
