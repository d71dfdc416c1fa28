/**
 * What a message's bytes are, before they are sent: size after line-end normalisation, whether any octet is
 * 8-bit, and a SHA-256. The MAIL parameters are decided from these per message (BODY=8BITMIME only for 8-bit
 * content: a server such as GNU Mailutils refuses any MAIL parameter), and --resume keys corpus messages by them.
 * A source that holds the message in memory says so itself (OpenedMessage.info); otherwise the item is opened
 * once more and read through before it is sent.
 */
import {createHash} from 'node:crypto'
import {DataEncoder} from '../protocol/wire/dot-stuffing.js'
import type {MessageInfo, OpenedMessage, ReplayItem} from './item.js'

/** Measures message bytes as the client will send them (line ends normalised; no dot-stuffing counted). */
export async function measureChunks(chunks: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<MessageInfo> {
  const enc = new DataEncoder({dotStuff: false})
  const hash = createHash('sha256')
  for await (const chunk of chunks) {
    enc.push(chunk)
    hash.update(chunk)
  }
  enc.end()
  return {size: enc.messageSize, has8bit: enc.has8bit, sha256: hash.digest('hex')}
}

/** The info of an opened message: what its source knew, else measured from a second opening of the item. */
export async function messageInfo(item: ReplayItem, msg: OpenedMessage): Promise<MessageInfo> {
  if (msg.info) return msg.info
  const again = await item.open()
  try {
    return await measureChunks(again.body)
  } finally {
    await again.close()
  }
}
