/**
 * Peer gating: which real third-party peers are installed here, and what a test should do when one is not.
 * Locally a missing peer skips the tests (with one hint on how to install); in CI (CI=true) it FAILS them:
 * interop is mandatory there, and a silently skipped interop suite would look green.
 */
import {spawnSync} from 'node:child_process'
import {accessSync, constants} from 'node:fs'
import {delimiter, join} from 'node:path'
import {beforeEach, describe, test} from 'vitest'
import {systemGroup, systemUser} from './proc.js'

/** Cyrus's programs and the SASL pieces its AUTH-required lmtpd needs (Debian paths). */
const CYRUS_PROGRAMS = [
  '/usr/lib/cyrus/bin/master',
  '/usr/lib/cyrus/bin/lmtpd',
  '/usr/lib/cyrus/bin/imapd',
  '/usr/lib/cyrus/bin/ctl_cyrusdb',
  'saslpasswd2',
  'unshare',
  'mount',
]
const SASL_PLUGINS = ['libplain.so', 'liblogin.so', 'libsasldb.so']

/** The SASL plugins (PLAIN, LOGIN, sasldb) that are not installed, searched where Debian puts them. */
function missingSaslPlugins(): string[] {
  const dirs = ['/usr/lib/x86_64-linux-gnu/sasl2', '/usr/lib/aarch64-linux-gnu/sasl2', '/usr/lib/sasl2']
  return SASL_PLUGINS.filter((plugin) => !dirs.some((dir) => isReadable(join(dir, plugin))))
}

function isReadable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK)
    return true
  } catch {
    return false
  }
}

/** The peers the interop tests can use. */
export type PeerName =
  | 'swaks'
  | 'smtp-source'
  | 'smtp-sink'
  | 'postfix'
  | 'dovecot'
  | 'cyrus'
  | 'mailutils'
  | 'python3'
  | 'aiosmtpd'
  | 'openssl'
  | 'systemd'
  | 'haproxy'
  | 'prometheus'

/** Every peer name, for tables and messages. */
export const PEER_NAMES: readonly PeerName[] = [
  'swaks',
  'smtp-source',
  'smtp-sink',
  'postfix',
  'dovecot',
  'cyrus',
  'mailutils',
  'python3',
  'aiosmtpd',
  'openssl',
  'systemd',
  'haproxy',
  'prometheus',
]

/** The command that installs every peer (Debian 12, as root). */
export const INSTALL_HINT = 'sudo bash .ci/install-peers'

/** Debian's interpreter: a different python3 (pyenv, venv) may come first on PATH and lack aiosmtpd. */
export const DEBIAN_PYTHON = '/usr/bin/python3'

const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Finds an executable on PATH or in the system sbin/bin dirs (Postfix's tools live in /usr/sbin). */
export function findExecutable(name: string): string | undefined {
  if (name.startsWith('/')) return isExecutable(name) ? name : undefined
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SYSTEM_DIRS]
  for (const dir of dirs) {
    const candidate = join(dir, name)
    if (isExecutable(candidate)) return candidate
  }
  return undefined
}

/**
 * The absolute path of a peer's program, or a clear error naming the install command. The start helpers call
 * it so that a test that forgot its gate still fails with a useful message instead of ENOENT.
 */
export function peerBinary(name: string): string {
  const path = findExecutable(name)
  if (!path) throw new Error(`peer program '${name}' is not installed: run \`${INSTALL_HINT}\``)
  return path
}

/** Why a peer is unusable here, or undefined when it is usable. */
function missingReason(name: PeerName): string | undefined {
  const needProgram = (...programs: string[]) => {
    const absent = programs.filter((p) => !findExecutable(p))
    return absent.length > 0 ? `${absent.join(', ')} not found` : undefined
  }
  const needRoot = () => (process.getuid?.() === 0 ? undefined : 'needs root (it runs a private instance as root)')
  switch (name) {
    case 'swaks':
    case 'smtp-source':
    case 'smtp-sink':
    case 'openssl':
    case 'haproxy':
    case 'prometheus':
      return needProgram(name)
    case 'python3':
      return needProgram(DEBIAN_PYTHON)
    case 'systemd':
      // The tools only: there is no systemd as PID 1 here (socket activation, unit checks, notification).
      return needProgram('systemd-socket-activate', 'systemd-analyze', 'systemd-notify', DEBIAN_PYTHON)
    case 'aiosmtpd': {
      const py = needProgram(DEBIAN_PYTHON)
      if (py) return py
      const r = spawnSync(DEBIAN_PYTHON, ['-c', 'import aiosmtpd'], {stdio: 'ignore', timeout: 20_000})
      return r.status === 0 ? undefined : `${DEBIAN_PYTHON} cannot import aiosmtpd (package python3-aiosmtpd)`
    }
    case 'postfix':
      return (
        needProgram('postfix', 'postconf', 'postqueue') ??
        (systemUser('postfix') && systemGroup('postdrop') !== undefined ? undefined : 'user postfix/group postdrop missing') ??
        needRoot()
      )
    case 'dovecot':
      return (
        needProgram('dovecot', '/usr/lib/dovecot/lmtp') ??
        (systemUser('mail') ? undefined : "Debian's 'mail' user is missing") ??
        needRoot()
      )
    case 'cyrus': {
      const plugins = missingSaslPlugins()
      return (
        needProgram(...CYRUS_PROGRAMS) ??
        (plugins.length > 0 ? `SASL plugins ${plugins.join(', ')} missing` : undefined) ??
        (systemUser('cyrus') && systemGroup('mail') !== undefined ? undefined : "user 'cyrus' or group 'mail' missing") ??
        needRoot()
      )
    }
    case 'mailutils': {
      const missing = needProgram('/usr/sbin/lmtpd')
      if (missing) return missing
      const r = spawnSync('/usr/sbin/lmtpd', ['--version'], {encoding: 'utf8', timeout: 20_000})
      return (
        (/GNU Mailutils/.test(r.stdout ?? '') ? undefined : '/usr/sbin/lmtpd is not GNU Mailutils (package mailutils-mda)') ??
        (systemUser('mail') && systemUser('news') ? undefined : "system users 'mail' and 'news' missing") ??
        needRoot()
      )
    }
  }
}

const cache = new Map<PeerName, string | undefined>()

/** Whether one peer is usable here (cached per process; LMTP_PEERS_HIDE is read every time). */
export function hasPeer(name: PeerName): boolean {
  return peerMissingReason(name) === undefined
}

function peerMissingReason(name: PeerName): string | undefined {
  // LMTP_PEERS_HIDE=a,b pretends peers are missing, to try the gating itself.
  if ((process.env.LMTP_PEERS_HIDE ?? '').split(',').some((s) => s.trim() === name)) return 'hidden by LMTP_PEERS_HIDE'
  if (!cache.has(name)) cache.set(name, missingReason(name))
  return cache.get(name)
}

/** True when running in CI, where interop tests are mandatory. */
export function inCi(): boolean {
  const ci = process.env.CI
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false'
}

/** The answer of {@link requirePeers}. */
export interface PeerGate {
  /** The peers asked for. */
  readonly names: readonly PeerName[]
  /** The ones that are not usable here, with the reason. */
  readonly missing: readonly {name: PeerName; reason: string}[]
  /** True when every peer is usable. */
  readonly ok: boolean
  /** Pass to `describe.skipIf`: true only when something is missing AND we are not in CI. */
  readonly skip: boolean
  /** A one-line explanation with the install command ('' when ok). */
  readonly message: string
  /** Throws the message when something is missing; call it in `beforeEach` so each test fails with it in CI. */
  check(): void
}

let hintLogged = false

/**
 * Checks that the named peers are installed. Call it at the top level of a test file (collection time) and use
 * `describe.skipIf(gate.skip)`, or simply {@link describePeers}. Missing peers locally: `skip` is true and the
 * install hint is logged once per process. Missing peers with CI=true: `skip` is false, a test named
 * "required interop peers are installed: ..." is registered that FAILS with the message (what is missing and
 * how to install it), and `check()` throws it too (call it in `beforeEach` to make each test fail with it).
 */
export function requirePeers(...names: PeerName[]): PeerGate {
  const missing = names.flatMap((name) => {
    const reason = peerMissingReason(name)
    return reason === undefined ? [] : [{name, reason}]
  })
  const ok = missing.length === 0
  const message = ok
    ? ''
    : `interop peers missing: ${missing.map((m) => `${m.name} (${m.reason})`).join('; ')}. Install them with \`${INSTALL_HINT}\``
  const ci = inCi()
  if (!ok && !ci && !hintLogged) {
    hintLogged = true
    console.warn(`[peers] skipping interop tests: ${message}`)
  }
  if (!ok && ci) registerCiFailure(names, message)
  return {
    names,
    missing,
    ok,
    skip: !ok && !ci,
    message,
    check() {
      if (!ok) throw new Error(`${message}${ci ? ' (CI=true: interop tests are mandatory, so this fails)' : ''}`)
    },
  }
}

/**
 * In CI a missing peer must show up as a FAILED test, whatever the caller does next: a failing hook alone can
 * leave its tests merely "skipped" in a summary. So while the test file is being collected, register one test
 * that fails with the message. Outside collection (called from a test or hook) registering is not allowed;
 * `check()` still throws there.
 */
function registerCiFailure(names: readonly PeerName[], message: string): void {
  try {
    test(`required interop peers are installed: ${names.join(', ')}`, () => {
      throw new Error(`${message} (CI=true: interop tests are mandatory)`)
    })
  } catch {
    // not in collection
  }
}

/**
 * `describe` gated on peers: skipped locally when one is missing; in CI every test in the block fails with
 * the gate's message (a `beforeEach` throws it), next to the failing test {@link requirePeers} registers.
 */
export function describePeers(title: string, names: readonly PeerName[], body: () => void): void {
  const gate = requirePeers(...names)
  describe.skipIf(gate.skip)(title, () => {
    beforeEach(() => gate.check())
    body()
  })
}
