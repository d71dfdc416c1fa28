/**
 * The probe's reading of its TARGET argument: the same syntax as everywhere (parseTarget), except that port 25
 * can be allowed explicitly to diagnose a server that is wrongly listening there. The probe then reports it
 * as a conformance failure instead of refusing to look.
 */
import {type Target, TargetError, parseTarget} from '../net/target.js'

/** Parses TARGET; with `allowPort25`, `HOST:25` is accepted (every other rule still applies). */
export function parseProbeTarget(text: string, allowPort25 = false): Target {
  try {
    return parseTarget(text)
  } catch (err) {
    const m = /^(.*):0*25$/.exec(text.trim())
    if (!(err instanceof TargetError) || !allowPort25 || !m) throw err
    // Parse with a stand-in port so the host rules (brackets for IPv6, no empty host) are still checked.
    const t = parseTarget(`${m[1]}:24`)
    return t.kind === 'tcp' ? {...t, port: 25} : t
  }
}
