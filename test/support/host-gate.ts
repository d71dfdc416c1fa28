/**
 * Gating for tests that need something of the host rather than a peer: root (to chown to another user, to
 * mount a tmpfs), a tool such as chattr, a file system feature. Locally an unmet need skips the tests with one
 * warning; in CI (CI=true) it FAILS them, exactly like a missing peer (see peers/gate.ts): a suite that skips
 * in CI would look green while testing nothing.
 */
import {inCi} from './peers/gate.js'

/** The answer of {@link requireHost}. */
export interface HostGate {
  /** Pass to `describe.skipIf`: true only when the need is unmet AND we are not in CI. */
  readonly skip: boolean
  /** Why the tests cannot run here ('' when they can). */
  readonly message: string
  /** Throws the message when the need is unmet; call it in the describe's `beforeEach` so each test fails in CI. */
  check(): void
}

/**
 * Gates tests on `unmet` (a reason, or undefined when the host has what they need): pass `skip` to the describe's
 * `skipIf` and call `check()` in its `beforeEach`.
 */
export function requireHost(what: string, unmet: string | undefined): HostGate {
  const message = unmet ? `${what}: ${unmet}` : ''
  const skip = unmet !== undefined && !inCi()
  if (skip) console.warn(`[host] skipped: ${message} (in CI this fails)`)
  return {
    skip,
    message,
    check: () => {
      if (unmet !== undefined) throw new Error(`${message} (CI=true: a test that cannot run here fails instead of skipping)`)
    },
  }
}

/** undefined as root, else why root is needed. */
export function needRoot(why: string): string | undefined {
  return process.getuid?.() === 0 ? undefined : `needs root ${why}`
}
