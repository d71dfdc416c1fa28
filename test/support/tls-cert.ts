/** A throw-away self-signed certificate made with openssl for STARTTLS tests. */
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import path from 'node:path'

/** PEM certificate and key written into `dir` (files cert.pem and key.pem). */
export function makeTestCertificate(dir: string, name = 'mx.test'): {cert: Buffer; key: Buffer; certFile: string; keyFile: string} {
  const certFile = path.join(dir, 'cert.pem')
  const keyFile = path.join(dir, 'key.pem')
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`],
    {stdio: 'ignore'},
  )
  return {cert: readFileSync(certFile), key: readFileSync(keyFile), certFile, keyFile}
}
