/**
 * Gating for tests that need something of the host rather than a peer: root (to chown to another user, to
 * mount a tmpfs), a tool such as chattr, a file system feature. Locally an unmet need skips the tests with one
 * warning; in CI (CI=true) it FAILS them, exactly like a missing peer (see peers/gate.ts): a suite that skips
 * in CI would look green while testing nothing.
 */
import {spawnSync} from 'node:child_process'
import {beforeEach} from 'vitest'
import {inCi} from './peers/gate.js'

/** The answer of {@link requireHost}. */
export interface HostGate {
  /** Pass to `describe.skipIf`: true only when the need is unmet AND we are not in CI. */
  readonly skip: boolean
  /** Why the tests cannot run here ('' when they can). */
  readonly message: string
}

/**
 * Gates the tests of the calling describe on `unmet` (a reason, or undefined when the host has what they need).
 * Call it inside the describe (it registers a beforeEach that fails each test in CI) and pass `skip` to the
 * describe's `skipIf`, or call it at the top of a file and use `describe.skipIf(gate.skip)`.
 */
export function requireHost(what: string, unmet: string | undefined): HostGate {
  const message = unmet ? `${what}: ${unmet}` : ''
  const skip = unmet !== undefined && !inCi()
  if (skip) console.warn(`[host] skipped: ${message} (in CI this fails)`)
  if (unmet !== undefined && !skip) {
    beforeEach(() => {
      throw new Error(`${message} (CI=true: a test that cannot run here fails instead of skipping)`)
    })
  }
  return {skip, message}
}

/** undefined as root, else why root is needed. */
export function needRoot(why: string): string | undefined {
  return process.getuid?.() === 0 ? undefined : `needs root ${why}`
}

/** undefined when the program runs (`program --version` by default), else why it cannot. */
export function needProgram(program: string, args: string[] = ['--version']): string | undefined {
  const r = spawnSync(program, args, {stdio: 'ignore', timeout: 20_000})
  return r.error ? `${program} is not installed` : undefined
}
