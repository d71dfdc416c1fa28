/**
 * Postfix as a real MTA in front of an LMTP server: a private instance (`postfix -c DIR`) with its own
 * main.cf/master.cf, queue, data dir and maillog in a temp dir, smtpd on a loopback port, and every mail for
 * the test domains handed to `lmtp:<target>`. Mail for any other domain is refused by the `error` transport,
 * so nothing ever leaves the machine. Never reads or touches /etc/postfix.
 */
import {chmod, chown, mkdir, readFile, utimes, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {peerBinary} from './gate.js'
import {
  freePort,
  isAlive,
  killGroup,
  onProcessExit,
  type PeerTarget,
  resolveTarget,
  runPeer,
  runSync,
  stopGroup,
  systemGroup,
  systemUser,
  tempDir,
  waitFor,
  waitForListening,
} from './proc.js'

/**
 * Which Postfix path hands mail to LMTP:
 * - `local`: `local_transport = lmtp:...` — one transaction with several RCPTs (exercises LMTP's N replies);
 * - `virtual`: the domains are virtual mailbox domains, `virtual_transport = lmtp:...` — also several RCPTs;
 * - `mailbox`: local(8) delivers via `mailbox_transport = lmtp:...` — one transaction per recipient.
 */
export type PostfixTransport = 'local' | 'virtual' | 'mailbox'

/** Options for {@link startPostfix}. */
export interface PostfixOptions {
  /** `'inet:127.0.0.1:P'`, `'unix:/abs/path'`, or a target object (a Unix socket must be reachable by user postfix). */
  lmtpTarget: string | PeerTarget
  /** Default `local`. */
  transport?: PostfixTransport
  /** Domains delivered over LMTP; default `['example.com']`. */
  domains?: string[]
  /** smtpd's port on 127.0.0.1; a free one when omitted (retried on a bind race). */
  smtpPort?: number
  /** Extra main.cf settings (override the defaults), e.g. `{lmtp_destination_recipient_limit: '2'}`. */
  mainCf?: Record<string, string>
  /** Run the lmtp client chrooted into the queue directory, as Debian's stock master.cf does. Default false. */
  chrootLmtp?: boolean
}

/** One `to=<...>, relay=..., dsn=..., status=...` line of the maillog. */
export interface PostfixDelivery {
  queueId: string
  /** The daemon that logged it, e.g. `postfix/lmtp`. */
  service: string
  to: string
  /** Present when Postfix rewrote the recipient (e.g. local(8) before mailbox_transport). */
  origTo?: string
  /** e.g. `127.0.0.1[127.0.0.1]:24024` or `host[/path/to.sock]`. */
  relay: string
  /** Enhanced status code, e.g. `2.0.0`. */
  dsn: string
  /** `sent`, `deferred`, `bounced`, `expired`, ... */
  status: string
  /** The parenthesised text: the server's reply and what Postfix says about it. */
  text: string
  line: string
}

/** A running private Postfix. */
export interface Postfix {
  /** smtpd on 127.0.0.1. */
  smtpPort: number
  /** The config directory (main.cf, master.cf). */
  configDir: string
  /** The queue directory (`queue_directory`, the chroot): `private/lmtp` is resolved inside it. */
  queueDirectory: string
  /** The log file (postlogd). */
  maillog: string
  /** The master daemon's pid. */
  pid: number
  /** The maillog so far. */
  log(): Promise<string>
  /** Every delivery line so far, in order (a deferred recipient appears again on each retry). */
  deliveries(): Promise<PostfixDelivery[]>
  /** Polls the maillog until a line satisfies `predicate`; returns that line. */
  waitForLog(predicate: (line: string) => boolean, timeoutMs?: number): Promise<string>
  /** Polls until `predicate(deliveries)` holds; returns the deliveries. */
  waitForDeliveries(predicate: (d: PostfixDelivery[]) => boolean, timeoutMs?: number): Promise<PostfixDelivery[]>
  /** `postqueue -c DIR -f`: retry deferred mail now. */
  flush(): Promise<void>
  /** The queue as `postqueue -j` reports it (one object per queued message). */
  queue(): Promise<Record<string, unknown>[]>
  /** `postfix -c DIR stop`, then makes sure master and its children are gone; removes the temp dir. */
  stop(): Promise<void>
}

/** The Postfix target string for an LMTP server. */
export function postfixLmtpTarget(target: string | PeerTarget): string {
  if (typeof target === 'string') return target
  const t = resolveTarget(target)
  return t.kind === 'unix' ? `unix:${t.path}` : `inet:${t.host}:${t.port}`
}

const DELIVERY =
  /^\S+ +\d+ [\d:]+ \S+ (?<service>[\w/.-]+)\[\d+\]: (?<queueId>[0-9A-Za-z]+): to=<(?<to>[^>]*)>, (?:orig_to=<(?<origTo>[^>]*)>, )?relay=(?<relay>[^,]+), .*?dsn=(?<dsn>\d\.\d+\.\d+), status=(?<status>\w+) \((?<text>.*)\)$/

/** Parses the delivery lines out of a maillog. */
export function parseDeliveries(maillog: string): PostfixDelivery[] {
  const out: PostfixDelivery[] = []
  for (const line of maillog.split('\n')) {
    const g = DELIVERY.exec(line)?.groups
    if (!g) continue
    out.push({
      queueId: g.queueId!,
      service: g.service!,
      to: g.to!,
      ...(g.origTo ? {origTo: g.origTo} : {}),
      relay: g.relay!,
      dsn: g.dsn!,
      status: g.status!,
      text: g.text!,
      line,
    })
  }
  return out
}

/** main.cf for the private instance (exported so a failing test can print what was used). */
export function postfixMainCf(p: {
  dir: string
  smtpPort: number
  target: string
  transport: PostfixTransport
  domains: string[]
  extra?: Record<string, string>
}): string {
  const lmtp = `lmtp:${p.target}`
  const settings: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: `${p.dir}/spool`,
    data_directory: `${p.dir}/data`,
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    maillog_file: `${p.dir}/maillog`,
    maillog_file_prefixes: p.dir,
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    myhostname: 'postfix.test',
    mydomain: 'postfix.test',
    myorigin: 'postfix.test',
    mynetworks: '127.0.0.0/8',
    relayhost: '',
    // Nothing leaves the machine: anything not for the test domains fails at once.
    default_transport: 'error:no outbound mail from the test instance',
    relay_transport: 'error:no outbound mail from the test instance',
    local_recipient_maps: '',
    alias_maps: '',
    alias_database: '',
    biff: 'no',
    append_dot_mydomain: 'no',
    smtpd_banner: '$myhostname ESMTP',
    delay_warning_time: '0h',
    // Fast retries so deferred mail is retried (and shows) within seconds.
    queue_run_delay: '1s',
    minimal_backoff_time: '1s',
    maximal_backoff_time: '2s',
    lmtp_connect_timeout: '5s',
  }
  if (p.transport === 'virtual') {
    settings.mydestination = ''
    settings.virtual_mailbox_domains = p.domains.join(', ')
    settings.virtual_mailbox_maps = ''
    settings.smtpd_reject_unlisted_recipient = 'no'
    settings.virtual_transport = lmtp
  } else {
    settings.mydestination = p.domains.join(', ')
    if (p.transport === 'local') settings.local_transport = lmtp
    else settings.mailbox_transport = lmtp
  }
  Object.assign(settings, p.extra)
  return `${Object.entries(settings)
    .map(([k, v]) => `${k} = ${v}`)
    .join('\n')}\n`
}

/** master.cf for the private instance: chroot off everywhere, smtpd on loopback, a postlog service. */
export function postfixMasterCf(smtpPort: number, chrootLmtp = false): string {
  const rows = [
    `127.0.0.1:${smtpPort} inet n - n - - smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'showq unix n - n - - showq',
    'error unix - - n - - error',
    'retry unix - - n - - error',
    'discard unix - - n - - discard',
    'local unix - n n - - local',
    'virtual unix - n n - - virtual',
    `lmtp unix - - ${chrootLmtp ? 'y' : 'n'} - - lmtp`,
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
  ]
  return `${rows.join('\n')}\n`
}

/** Queue subdirectories owned by the mail owner with mode 0700 (as in Postfix's postfix-files). */
const PRIVATE_QUEUES = ['active', 'bounce', 'corrupt', 'defer', 'deferred', 'flush', 'hold', 'incoming', 'private', 'saved', 'trace']

/**
 * Creates the queue directory tree exactly as Postfix's `post-install create-missing` would, then marks it
 * `quick-start` (Postfix's own mechanism, see `postfix-script quick-stop`) so `postfix start` skips its
 * integrity checks: they run ~20 `postconf` processes and cost 1.5-2 s per start, for a tree we just made.
 */
async function makeSpool(spool: string, uid: number, postdrop: number): Promise<void> {
  await mkdir(spool, {mode: 0o755})
  for (const name of PRIVATE_QUEUES) {
    await mkdir(join(spool, name), {mode: 0o700})
    await chown(join(spool, name), uid, 0)
  }
  for (const [name, mode] of [
    ['maildrop', 0o730],
    ['public', 0o710],
  ] as const) {
    await mkdir(join(spool, name))
    await chown(join(spool, name), uid, postdrop)
    await chmod(join(spool, name), mode) // after chown, and not via mkdir: umask would strip group bits
  }
  await mkdir(join(spool, 'pid'), {mode: 0o755})
  await writeFile(join(spool, 'quick-start'), '')
}

/**
 * Starts a private Postfix (`postfix -c DIR start`) and resolves once smtpd greets on its port. Layout of the
 * temp dir: `conf/` (root-owned config), `spool/` (queue, created by Postfix), `data/` (owned by postfix),
 * `maillog`.
 */
export async function startPostfix(options: PostfixOptions): Promise<Postfix> {
  const postfixBin = peerBinary('postfix')
  const postqueueBin = peerBinary('postqueue')
  const owner = systemUser('postfix')
  const postdrop = systemGroup('postdrop')
  if (!owner || postdrop === undefined) {
    throw new Error("the 'postfix' user or 'postdrop' group is missing: run `sudo bash .ci/install-peers`")
  }
  const attempts = options.smtpPort === undefined ? 3 : 1
  for (let attempt = 1; ; attempt++) {
    const dir = await tempDir('lmtp-postfix')
    const conf = join(dir.path, 'conf')
    await mkdir(conf)
    await makeSpool(join(dir.path, 'spool'), owner.uid, postdrop)
    await mkdir(join(dir.path, 'data'))
    await chown(join(dir.path, 'data'), owner.uid, owner.gid)
    const smtpPort = options.smtpPort ?? (await freePort())
    await writeFile(
      join(conf, 'main.cf'),
      postfixMainCf({
        dir: dir.path,
        smtpPort,
        target: postfixLmtpTarget(options.lmtpTarget),
        transport: options.transport ?? 'local',
        domains: options.domains ?? ['example.com'],
        extra: options.mainCf,
      }),
    )
    await writeFile(join(conf, 'master.cf'), postfixMasterCf(smtpPort, options.chrootLmtp))
    // Postfix re-reads a config file modified within the last ~2 s, sleeping 300 ms per try, as a guard
    // against half-written files: backdate ours so start does not wait on it.
    const past = new Date(Date.now() - 60_000)
    for (const f of ['main.cf', 'master.cf']) await utimes(join(conf, f), past, past)
    const maillog = join(dir.path, 'maillog')
    const log = () => readFile(maillog, 'utf8').catch(() => '')
    const pidFile = join(dir.path, 'spool', 'pid', 'master.pid')

    const started = await runPeer(postfixBin, ['-c', conf, 'start'], {timeoutMs: 60_000})
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim()) || 0
    // Last resort if the test process dies without calling stop(): synchronous, by the master's own group.
    const unregister = onProcessExit(() => {
      runSync(postfixBin, ['-c', conf, 'abort'], 5_000)
      if (pid > 0) killGroup(pid)
    })
    const shutdown = async () => {
      await runPeer(postfixBin, ['-c', conf, 'stop'], {timeoutMs: 20_000})
      if (pid > 0) {
        try {
          await waitFor('postfix master to exit', () => !isAlive(pid), 10_000)
        } catch {
          await runPeer(postfixBin, ['-c', conf, 'abort'], {timeoutMs: 10_000})
          killGroup(pid)
        }
        // master is a session leader: its children share its process group.
        await stopGroup(pid)
      }
      unregister()
    }
    try {
      if (started.code !== 0 || pid === 0) {
        throw new Error(`postfix start failed (code ${started.code}): ${started.stderr.trim()}`)
      }
      await waitForListening({port: smtpPort}, {greeting: true, timeoutMs: 20_000})
    } catch (err) {
      const text = await log()
      await shutdown()
      await dir.cleanup()
      if (attempt < attempts && /address already in use/i.test(text + String(err))) continue
      throw new Error(`${(err as Error).message}\nmaillog:\n${text}`)
    }

    let stopped: Promise<void> | undefined
    const handle: Postfix = {
      smtpPort,
      configDir: conf,
      queueDirectory: join(dir.path, 'spool'),
      maillog,
      pid,
      log,
      async deliveries() {
        return parseDeliveries(await log())
      },
      async waitForLog(predicate, timeoutMs = 20_000) {
        return waitFor(
          'a matching maillog line',
          async () => (await log()).split('\n').find(predicate),
          timeoutMs,
        ).catch(async (err: Error) => {
          throw new Error(`${err.message}\nmaillog:\n${await log()}`)
        })
      },
      async waitForDeliveries(predicate, timeoutMs = 20_000) {
        return waitFor(
          'matching deliveries in the maillog',
          async () => {
            const d = await handle.deliveries()
            return predicate(d) ? d : undefined
          },
          timeoutMs,
        ).catch(async (err: Error) => {
          throw new Error(`${err.message}\nmaillog:\n${await log()}`)
        })
      },
      async flush() {
        const r = await runPeer(postqueueBin, ['-c', conf, '-f'])
        if (r.code !== 0) throw new Error(`postqueue -f failed: ${r.stderr.trim()}`)
      },
      async queue() {
        const r = await runPeer(postqueueBin, ['-c', conf, '-j'])
        if (r.code !== 0) throw new Error(`postqueue -j failed: ${r.stderr.trim()}`)
        return r.stdout
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>)
      },
      stop() {
        stopped ??= (async () => {
          await shutdown()
          await dir.cleanup()
        })()
        return stopped
      },
    }
    return handle
  }
}
