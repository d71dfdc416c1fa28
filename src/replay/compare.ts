/**
 * --compare: each recipient's outcome now against the recording. Same when the reply code is the same and the
 * enhanced codes do not differ (a missing one matches). Changes are counted once here and grouped by what
 * changed, with the reply text's per-message tokens taken out, so that 714 changes from one cause are one line.
 */
import type {RecipientResult} from '../protocol/client.js'
import type {ReplayItem} from './item.js'
import type {ChangeGroup, CompareSummary, OutcomeChange} from './summary.js'
import type {RecordedRecipient} from './transcript.js'

const MAX_CHANGES = 1000
const MAX_RECIPIENTS_PER_GROUP = 1000

/**
 * Reply text without what changes from message to message: angle-bracket tokens (`<a@x>`, `<id>`),
 * `KEY=value` ids (Cyrus's SESSIONID=<...>), words with a digit that are at least 6 long (queue ids, hex and
 * base36 ids, file names), and numbers; spaces collapsed. Dovecot's `<a@x> 8Ha3FIUpL2mOHwAAFwOrTA:T2:R2 Saved`
 * and Cyrus's `Success SESSIONID=<cyrus-1-2>` become `Saved` and `Success`.
 */
export function normaliseReplyText(text: string): string {
  return text
    .replace(/\b[A-Za-z][A-Za-z_-]*=(<[^>]*>|\S+)/g, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/\S*\d\S*/g, (token) => (token.length >= 6 || /^[\d.:,;()[\]-]+$/.test(token) ? ' ' : token))
    .replace(/\s+/g, ' ')
    .trim()
}

function codeText(code: number | undefined, enhanced: string | undefined): string {
  return code === undefined ? 'no outcome' : `${code}${enhanced ? ` ${enhanced}` : ''}`
}

/** Counts and groups the outcome changes of one run. */
export class Comparison {
  private compared = 0
  private unchanged = 0
  private changed = 0
  private notComparable = 0
  private readonly changes: OutcomeChange[] = []
  private readonly groups = new Map<string, ChangeGroup & {byRecipient: Map<string, number>}>()

  /**
   * Compares one result with its recording; returns the recorded outcome it was compared with (undefined when
   * not comparable) and whether it changed.
   */
  record(item: ReplayItem, r: RecipientResult, overridden: boolean): {recorded?: RecordedRecipient; changed: boolean} {
    if (!item.recorded) return {changed: false}
    const recorded = overridden ? undefined : item.recorded[r.index]
    if (!recorded || recorded.code === undefined) {
      this.notComparable++
      return {changed: false}
    }
    this.compared++
    const same = recorded.code === r.code && (recorded.enhanced === undefined || r.enhanced === undefined || recorded.enhanced === r.enhanced)
    if (same) {
      this.unchanged++
      return {recorded, changed: false}
    }
    this.changed++
    const change: OutcomeChange = {
      source: item.source,
      index: r.index,
      recipient: r.recipient,
      recorded: {code: recorded.code, enhanced: recorded.enhanced, text: recorded.text, outcome: recorded.outcome},
      now: {code: r.code, enhanced: r.enhanced, text: r.text, outcome: r.outcome},
    }
    if (this.changes.length < MAX_CHANGES) this.changes.push(change)
    this.group(change)
    return {recorded, changed: true}
  }

  private group(ch: OutcomeChange): void {
    const text = normaliseReplyText(ch.now.text)
    const key = `${codeText(ch.recorded.code, ch.recorded.enhanced)}\n${codeText(ch.now.code, ch.now.enhanced)}\n${text}`
    let g = this.groups.get(key)
    if (!g) {
      g = {
        recorded: {code: ch.recorded.code, enhanced: ch.recorded.enhanced},
        now: {code: ch.now.code, enhanced: ch.now.enhanced, outcome: ch.now.outcome, text},
        count: 0,
        recipients: [],
        recipientCount: 0,
        firstSource: ch.source,
        byRecipient: new Map(),
      }
      this.groups.set(key, g)
    }
    g.count++
    const n = g.byRecipient.get(ch.recipient)
    if (n !== undefined) g.byRecipient.set(ch.recipient, n + 1)
    else {
      g.recipientCount++
      if (g.byRecipient.size < MAX_RECIPIENTS_PER_GROUP) g.byRecipient.set(ch.recipient, 1)
    }
  }

  /** The counts, the groups (most changes first) and the first changes. */
  summary(): CompareSummary {
    const groups = [...this.groups.values()]
      .sort((a, b) => b.count - a.count)
      .map(({byRecipient, ...g}) => ({
        ...g,
        recipients: [...byRecipient.entries()].sort((a, b) => b[1] - a[1]).map(([recipient, count]) => ({recipient, count})),
      }))
    return {
      compared: this.compared,
      unchanged: this.unchanged,
      changed: this.changed,
      notComparable: this.notComparable,
      groups,
      changes: this.changes,
    }
  }
}

/** `250 2.0.0 -> 550 5.1.1` for a group. */
export function groupHeading(g: ChangeGroup): string {
  return `${codeText(g.recorded.code, g.recorded.enhanced)} -> ${codeText(g.now.code, g.now.enhanced)}`
}
