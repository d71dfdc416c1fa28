/**
 * Exit codes of every command (sysexits.h where one fits), documented in the README. Scripts and MTAs read
 * these, so they never change meaning. They live below every layer so that the client core (src/client) can
 * map its results to them without importing the CLI layer; src/cli/exit-codes.ts re-exports them.
 */
export const EXIT = {
  /** Everything worked (every recipient delivered; no conformance failure). */
  ok: 0,
  /** Bad flags or arguments. */
  usage: 64,
  /** The input data is wrong (a message over the server's SIZE, 8-bit content the server cannot take). */
  dataErr: 65,
  /** An input file is missing or unreadable. */
  noInput: 66,
  /** Permanent failure: a recipient was rejected (5xx), or the server lacks what was asked for. */
  unavailable: 69,
  /** Internal error: a bug in lmtp. */
  software: 70,
  /** A file or directory cannot be created (the Maildir root is missing or not writable by the serving user). */
  cantCreate: 73,
  /** I/O error: the connection failed, a file or socket could not be written. */
  ioErr: 74,
  /** Temporary failure: some recipients deferred (4xx), none rejected; try again later. */
  tempFail: 75,
  /** The server broke the protocol (wrong number of replies, garbage), or failed a conformance check. */
  protocol: 76,
  /** Configuration error (users file, certificate, credentials the server refused or requires). */
  config: 78,
  /** Interrupted by Ctrl-C (SIGINT): 128 + 2, as shells report it. */
  interrupted: 130,
} as const

/** One of the exit codes. */
export type ExitCode = (typeof EXIT)[keyof typeof EXIT]
