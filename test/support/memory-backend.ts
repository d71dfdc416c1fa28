/**
 * An in-memory Backend for protocol tests: accepts every recipient unless told otherwise, keeps delivered
 * messages in an array, and can fail chosen recipients at RCPT time or at delivery, temporarily or permanently.
 */
import type {Path} from '../../src/protocol/address.js'
import type {Backend, DeliveryResult, Envelope, RecipientCheck, Spool} from '../../src/protocol/backend.js'
import {perRecipient} from '../../src/protocol/replies.js'
import type {Reply} from '../../src/protocol/reply.js'

/** A message the memory backend delivered to one recipient. */
export interface MemoryDelivery {
  transactionId: string
  from: string
  recipient: string
  body: Buffer
}

/** A Spool that keeps the body in memory (tests only: real spools stream to disk). */
export class MemorySpool implements Spool {
  chunks: Buffer[] = []
  finished = false
  discarded = false
  write(chunk: Buffer): void {
    this.chunks.push(Buffer.from(chunk))
  }
  async finish(): Promise<void> {
    this.finished = true
  }
  async discard(): Promise<void> {
    this.discarded = true
  }
  get body(): Buffer {
    return Buffer.concat(this.chunks)
  }
}

/** The in-memory Backend. */
export class MemoryBackend implements Backend {
  /** Recipient address (lower-case) -> reply to give at RCPT. */
  readonly rcptFailures = new Map<string, Reply>()
  /** Recipient address (lower-case) -> reply to give after the body. */
  readonly deliveryFailures = new Map<string, Reply>()
  readonly delivered: MemoryDelivery[] = []
  readonly spools: MemorySpool[] = []
  /** Delay in ms before each recipient's result (to exercise ordering), by address. */
  readonly delays = new Map<string, number>()
  /** Make deliver() throw (a backend bug): the session must still answer every recipient. */
  throwOnDeliver = false

  async checkRecipient(path: Path): Promise<RecipientCheck> {
    const r = this.rcptFailures.get(path.address.toLowerCase())
    return r ? {ok: false, reply: r} : {ok: true}
  }

  async openSpool(): Promise<Spool> {
    const s = new MemorySpool()
    this.spools.push(s)
    return s
  }

  async deliver(
    envelope: Envelope,
    spool: Spool,
    _session: unknown,
    onResult: (index: number, result: DeliveryResult) => void,
  ): Promise<void> {
    if (this.throwOnDeliver) throw new Error('backend failure')
    const body = (spool as MemorySpool).body
    await Promise.all(
      envelope.recipients.map(async (r) => {
        const addr = r.path.address
        const delay = this.delays.get(addr.toLowerCase())
        if (delay) await new Promise((res) => setTimeout(res, delay))
        const fail = this.deliveryFailures.get(addr.toLowerCase())
        if (fail) {
          onResult(r.index, {reply: fail})
          return
        }
        this.delivered.push({transactionId: envelope.transactionId, from: envelope.from.address, recipient: addr, body})
        onResult(r.index, {reply: perRecipient.delivered(addr), bytes: body.length})
      }),
    )
  }
}
