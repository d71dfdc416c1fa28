/**
 * The interop harness: start and drive the REAL third-party LMTP peers (Postfix, smtp-sink/smtp-source,
 * swaks, Dovecot LMTP, Cyrus IMAP's lmtpd, GNU Mailutils' lmtpd, Python smtplib and aiosmtpd) in temp dirs, on
 * loopback only, never touching /etc or the peers' system state dirs. {@link LineConnection} talks to a peer
 * raw (no project code), for set-up and for the self-tests that pin each peer's behaviour down.
 * Everything a helper starts is stopped by pid (then by the process group the harness created) in `stop()`,
 * and again as a last resort when the test process exits.
 *
 * Typical use:
 * ```ts
 * const gate = requirePeers('postfix', 'dovecot')
 * describe.skipIf(gate.skip)('postfix -> dovecot', () => {
 *   beforeEach(() => gate.check())       // CI=true: missing peers FAIL, never skip
 *   ...
 * })
 * ```
 * Targets are general (a loopback port or an absolute Unix socket path) so the same helpers can point
 * Postfix, swaks, smtp-source and Python at `lmtp serve`. For a Unix socket that Postfix must reach, make it
 * in a {@link tempDir} and call {@link allowPeerAccess} on it (Postfix's lmtp client runs as user postfix).
 * Set LMTP_PEERS_KEEP=1 to keep the temp dirs (configs and logs) after a run.
 */
export * from './peers/aiosmtpd.js'
export * from './peers/cyrus.js'
export * from './peers/dovecot.js'
export * from './peers/gate.js'
export * from './peers/mailutils.js'
export * from './peers/postfix.js'
export * from './peers/prometheus.js'
export * from './peers/proc.js'
export * from './peers/raw-lines.js'
export * from './peers/runners.js'
export * from './peers/smtp-sink.js'
export * from './peers/syslog-sink.js'
