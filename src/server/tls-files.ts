/**
 * The certificate and key of `--tls-cert` / `--tls-key`, read and checked before they are used (at startup and on
 * SIGHUP): each file must be readable and parse as PEM, the key must belong to the certificate, and a certificate
 * close to its end (or past it) is reported, so an operator gets the file name and the fix instead of a raw
 * OpenSSL error later.
 */
import {X509Certificate, createPrivateKey} from 'node:crypto'
import {readFile} from 'node:fs/promises'

/** A certificate expiring within this many days starts the server with a warning. */
export const EXPIRY_WARNING_DAYS = 14

/** A checked certificate and key. */
export interface TlsFiles {
  cert: Buffer
  key: Buffer
  /** The certificate's notAfter. */
  notAfter: Date
  /** Its subject, for log lines. */
  subject: string
}

/** A certificate or key that cannot be used; `kind` tells which exit code fits (66 unreadable, 78 bad). */
export class TlsFileError extends Error {
  constructor(
    message: string,
    readonly kind: 'unreadable' | 'invalid',
  ) {
    super(message)
    this.name = 'TlsFileError'
  }
}

async function readPem(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    throw new TlsFileError(`cannot read the TLS ${what} ${file} (${code}): check the path and that this user may read it`, 'unreadable')
  }
}

/** Reads and checks the pair; throws TlsFileError naming the file at fault. */
export async function loadTlsFiles(certFile: string, keyFile: string): Promise<TlsFiles> {
  const cert = await readPem(certFile, 'certificate')
  const key = await readPem(keyFile, 'key')
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert)
  } catch (err) {
    throw new TlsFileError(`${certFile} is not a PEM certificate (${(err as Error).message}): give --tls-cert a file that begins with -----BEGIN CERTIFICATE-----`, 'invalid')
  }
  let privateKey: ReturnType<typeof createPrivateKey>
  try {
    privateKey = createPrivateKey(key)
  } catch (err) {
    throw new TlsFileError(`${keyFile} is not a PEM private key (${(err as Error).message}): give --tls-key the unencrypted key of ${certFile}`, 'invalid')
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new TlsFileError(`${keyFile} is not the key of ${certFile}: the two do not match; give the key the certificate was issued for`, 'invalid')
  }
  return {cert, key, notAfter: new Date(x509.validTo), subject: x509.subject.replace(/\n/g, ', ')}
}

/** A warning when the certificate expires within EXPIRY_WARNING_DAYS of `now` (or has expired); else undefined. */
export function expiryWarning(files: TlsFiles, certFile: string, now = Date.now()): string | undefined {
  const left = files.notAfter.getTime() - now
  if (left <= 0) return `the TLS certificate ${certFile} expired on ${files.notAfter.toISOString()}: renew it (clients that verify will refuse STARTTLS)`
  const days = left / 86_400_000
  if (days < EXPIRY_WARNING_DAYS) {
    return `the TLS certificate ${certFile} expires on ${files.notAfter.toISOString()} (in ${Math.floor(days)} days): renew it, then send SIGHUP`
  }
  return undefined
}
