/**
 * The two systemd protocols `lmtp serve` speaks: socket activation (sd_listen_fds(3): LISTEN_PID, LISTEN_FDS,
 * LISTEN_FDNAMES; the sockets are fds 3, 4, ...) and service notification (sd_notify(3): READY=1, RELOADING=1,
 * STOPPING=1 sent to the datagram socket in NOTIFY_SOCKET).
 *
 * Node has no Unix datagram sockets, so notifications are sent by Debian's `systemd-notify` (package systemd,
 * present wherever systemd is). It waits until the manager has processed the message (a BARRIER=1 round trip,
 * systemd >= 246), which closes the race in which a short-lived sender exits before systemd can tell which unit
 * it belongs to; the unit must say `NotifyAccess=all` because the sender is a child, and each message carries
 * MAINPID= so systemd keeps watching this process. The npm alternatives (`sd-notify`, `unix-dgram`) are native
 * add-ons that need a compiler (and libsystemd headers) at install time; a failed notification must never stop
 * delivery, so it is only logged.
 */
import {execFile} from 'node:child_process'

/** The first inherited fd (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3

/** A socket passed by the service manager. */
export interface InheritedSocket {
  fd: number
  /** Its name from LISTEN_FDNAMES (FileDescriptorName= of the socket unit; "unknown" when not given). */
  name: string
}

/**
 * The sockets systemd passed to this process, or [] when none were (or they were meant for another process:
 * LISTEN_PID differs). The variables are removed from `env` so that child processes do not adopt them too.
 */
export function takeListenFds(env: NodeJS.ProcessEnv = process.env, pid = process.pid): InheritedSocket[] {
  const count = Number(env.LISTEN_FDS)
  const forPid = Number(env.LISTEN_PID)
  const names = (env.LISTEN_FDNAMES ?? '').split(':')
  delete env.LISTEN_FDS
  delete env.LISTEN_PID
  delete env.LISTEN_FDNAMES
  if (!Number.isInteger(count) || count <= 0 || forPid !== pid) return []
  return Array.from({length: count}, (_, i) => ({fd: LISTEN_FDS_START + i, name: names[i] || 'unknown'}))
}

/** Sends sd_notify states; a no-op without NOTIFY_SOCKET. */
export class SystemdNotifier {
  private readonly socket: string | undefined
  private queue: Promise<void> = Promise.resolve()

  constructor(
    env: NodeJS.ProcessEnv = process.env,
    private readonly onError: (message: string) => void = () => {},
    private readonly command = 'systemd-notify',
  ) {
    this.socket = env.NOTIFY_SOCKET
  }

  /** True when a service manager asked for notifications. */
  get enabled(): boolean {
    return this.socket !== undefined && this.socket !== ''
  }

  /** Sends `READY=1` (with the status text). */
  ready(status: string): Promise<void> {
    return this.send(['READY=1', `STATUS=${status}`])
  }

  /** Sends `RELOADING=1` with MONOTONIC_USEC (as systemd's Type=notify-reload expects). */
  reloading(): Promise<void> {
    return this.send(['RELOADING=1', `MONOTONIC_USEC=${monotonicUsec()}`])
  }

  /** Sends `READY=1` again after a reload, with the outcome as status. */
  reloaded(status: string): Promise<void> {
    return this.ready(status)
  }

  /** Sends `STOPPING=1`. */
  stopping(): Promise<void> {
    return this.send(['STOPPING=1', 'STATUS=stopping'])
  }

  /** Messages go out one at a time, in order; resolves when this one was delivered (or failed and was logged). */
  private send(states: string[]): Promise<void> {
    if (!this.enabled) return Promise.resolve()
    const args = [`MAINPID=${process.pid}`, ...states]
    this.queue = this.queue.then(
      () =>
        new Promise<void>((resolve) => {
          execFile(this.command, args, {env: {...process.env, NOTIFY_SOCKET: this.socket}, timeout: 10_000}, (err, _out, stderr) => {
            if (err) this.onError(`cannot notify systemd (${states[0]}) via ${this.command}: ${String(stderr).trim() || err.message}`)
            resolve()
          })
        }),
    )
    return this.queue
  }
}

/** CLOCK_MONOTONIC in microseconds (process.hrtime is monotonic and on Linux reads that clock). */
function monotonicUsec(): string {
  return (process.hrtime.bigint() / 1000n).toString()
}
