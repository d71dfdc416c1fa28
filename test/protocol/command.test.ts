import fc from 'fast-check'
import {describe, expect, test} from 'vitest'
import type {Path} from '../../src/protocol/address.js'
import {
  type Command,
  formatCommand,
  hasControlCharacter,
  type MailParams,
  type OutgoingCommand,
  type ParseResult,
  parseCommand,
  VERBS,
  type Verb,
} from '../../src/protocol/command.js'
import {R} from '../../src/protocol/replies.js'
import type {Reply} from '../../src/protocol/reply.js'

/** A plain `local@domain` path as the parser reports it. */
function mailbox(local: string, domain: string, isUtf8 = false): Path {
  return {
    address: `${local}@${domain}`,
    localPart: local,
    localPartValue: local,
    domain,
    isNull: false,
    isPostmaster: false,
    isUtf8,
  }
}

const nullPath: Path = {
  address: '',
  localPart: '',
  localPartValue: '',
  domain: '',
  isNull: true,
  isPostmaster: false,
  isUtf8: false,
}

const ok = (command: Command): ParseResult => ({ok: true, command})
const no = (reply: Reply, verb?: Verb, bdatSize?: number): ParseResult => {
  const r: ParseResult = {ok: false, reply}
  if (verb !== undefined) r.verb = verb
  if (bdatSize !== undefined) r.bdatSize = bdatSize
  return r
}

const alice = mailbox('alice', 'example.com')

describe('parseCommand: verbs and arguments', () => {
  const cases: Array<[string, ParseResult]> = [
    // Unknown verbs, and words that only look like verbs
    ['', no(R.unknownCommand)],
    [' DATA', no(R.unknownCommand)],
    ['DATAX', no(R.unknownCommand)],
    ['XDATA', no(R.unknownCommand)],
    ['FOO bar', no(R.unknownCommand)],
    ['SEND FROM:<a@b.c>', no(R.unknownCommand)],
    ['TURN', no(R.unknownCommand)],
    ['AUTH PLAIN', no(R.unknownCommand)],
    ['quıt', no(R.unknownCommand)], // dotless i upper-cases to I with toUpperCase
    ['ſtarttls', no(R.unknownCommand)], // long s upper-cases to S with toUpperCase
    ['DÄTA', no(R.unknownCommand)],

    // No-argument verbs
    ['DATA', ok({verb: 'DATA'})],
    ['data', ok({verb: 'DATA'})],
    ['DaTa', ok({verb: 'DATA'})],
    ['DATA ', ok({verb: 'DATA'})],
    ['DATA  ', no(R.noArgumentsAllowed, 'DATA')],
    ['DATA x', no(R.noArgumentsAllowed, 'DATA')],
    ['RSET', ok({verb: 'RSET'})],
    ['rset', ok({verb: 'RSET'})],
    ['RSET now', no(R.noArgumentsAllowed, 'RSET')],
    ['QUIT', ok({verb: 'QUIT'})],
    ['Quit', ok({verb: 'QUIT'})],
    ['QUIT please', no(R.noArgumentsAllowed, 'QUIT')],
    ['STARTTLS', ok({verb: 'STARTTLS'})],
    ['starttls', ok({verb: 'STARTTLS'})],
    ['STARTTLS x', no(R.noArgumentsAllowed, 'STARTTLS')],

    // NOOP ignores arguments
    ['NOOP', ok({verb: 'NOOP'})],
    ['noop', ok({verb: 'NOOP'})],
    ['NOOP anything at all <x> =y', ok({verb: 'NOOP'})],

    // VRFY needs an argument
    ['VRFY alice', ok({verb: 'VRFY', argument: 'alice'})],
    ['vrfy <alice@example.com>', ok({verb: 'VRFY', argument: '<alice@example.com>'})],
    ['VRFY Alice Smith', ok({verb: 'VRFY', argument: 'Alice Smith'})],
    ['VRFY', no(R.badArgument, 'VRFY')],
    ['VRFY ', no(R.badArgument, 'VRFY')],

    // HELO / EHLO parse so the session can refuse them with heloNotLmtp
    ['HELO client.example', ok({verb: 'HELO', argument: 'client.example'})],
    ['EHLO client.example', ok({verb: 'EHLO', argument: 'client.example'})],
    ['ehlo', ok({verb: 'EHLO', argument: ''})],

    // LHLO: exactly one word, lenient about its shape
    ['LHLO client.example', ok({verb: 'LHLO', domain: 'client.example'})],
    ['lhlo client.example', ok({verb: 'LHLO', domain: 'client.example'})],
    ['LHLO [192.0.2.1]', ok({verb: 'LHLO', domain: '[192.0.2.1]'})],
    ['LHLO [IPv6:2001:db8::1]', ok({verb: 'LHLO', domain: '[IPv6:2001:db8::1]'})],
    ['LHLO localhost', ok({verb: 'LHLO', domain: 'localhost'})],
    ['LHLO my_host', ok({verb: 'LHLO', domain: 'my_host'})],
    ['LHLO bücher.example', ok({verb: 'LHLO', domain: 'bücher.example'})],
    ['LHLO', no(R.lhloNeedsDomain, 'LHLO')],
    ['LHLO ', no(R.lhloNeedsDomain, 'LHLO')],
    ['LHLO  client.example', no(R.lhloNeedsDomain, 'LHLO')],
    ['LHLO client.example ', no(R.lhloNeedsDomain, 'LHLO')],
    ['LHLO client.example extra', no(R.lhloNeedsDomain, 'LHLO')],
  ]
  test.each(cases)('%j', (line, expected) => {
    expect(parseCommand(line)).toEqual(expected)
  })
})

describe('parseCommand: MAIL FROM', () => {
  const mail = (from: Path, params: MailParams = {}): ParseResult => ok({verb: 'MAIL', from, params})
  const cases: Array<[string, ParseResult]> = [
    ['MAIL FROM:<alice@example.com>', mail(alice)],
    ['mail from:<alice@example.com>', mail(alice)],
    ['MAIL From:<alice@example.com>', mail(alice)],
    ['MAIL FROM:<>', mail(nullPath)],
    ['MAIL FROM:<@relay.example:alice@example.com>', mail(alice)],
    ['MAIL FROM:<josé@example.com>', mail(mailbox('josé', 'example.com', true))],
    ['MAIL FROM:<josé@example.com> SMTPUTF8', mail(mailbox('josé', 'example.com', true), {smtputf8: true})],

    // Framing of the arguments
    ['MAIL', no(R.badArgument, 'MAIL')],
    ['MAIL ', no(R.badArgument, 'MAIL')],
    ['MAIL FROM', no(R.badArgument, 'MAIL')],
    ['MAIL FROM <alice@example.com>', no(R.badArgument, 'MAIL')],
    ['MAIL TO:<alice@example.com>', no(R.badArgument, 'MAIL')],
    ['MAIL  FROM:<alice@example.com>', no(R.badArgument, 'MAIL')],
    ['MAIL FROM: <alice@example.com>', no(R.badArgument, 'MAIL')],
    ['MAIL FROM:<alice@example.com>x', no(R.badArgument, 'MAIL')],
    ['MAIL FROM:<alice@example.com> ', no(R.badArgument, 'MAIL')],
    ['MAIL FROM:<alice@example.com>  SIZE=1', no(R.badArgument, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SIZE=1 ', no(R.badArgument, 'MAIL')],
    ['MAIL FROM:<alice@example.com> =1', no(R.badArgument, 'MAIL')],
    ['MAIL FROM:<alice@example.com> -X=1', no(R.badArgument, 'MAIL')],

    // The path
    ['MAIL FROM:', no(R.badSender, 'MAIL')],
    ['MAIL FROM:alice@example.com', no(R.badSender, 'MAIL')],
    ['MAIL FROM:<alice@example.com', no(R.badSender, 'MAIL')],
    ['MAIL FROM:<alice>', no(R.badSender, 'MAIL')],
    ['MAIL FROM:<Postmaster>', no(R.badSender, 'MAIL')],
    ['MAIL FROM:<al..ice@example.com>', no(R.badSender, 'MAIL')],
    ['MAIL FROM:<alice@example..com>', no(R.badSender, 'MAIL')],
    [`MAIL FROM:<${'a'.repeat(65)}@example.com>`, no(R.badSender, 'MAIL')],

    // SIZE (RFC 1870)
    ['MAIL FROM:<alice@example.com> SIZE=0', mail(alice, {size: 0})],
    ['MAIL FROM:<alice@example.com> SIZE=12345', mail(alice, {size: 12345})],
    ['MAIL FROM:<alice@example.com> size=12345', mail(alice, {size: 12345})],
    ['MAIL FROM:<alice@example.com> SIZE=007', mail(alice, {size: 7})],
    ['MAIL FROM:<alice@example.com> SIZE=99999999999999999999', mail(alice, {size: 1e20})],
    ['MAIL FROM:<alice@example.com> SIZE', no(R.badSize, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SIZE=', no(R.badSize, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SIZE=-1', no(R.badSize, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SIZE=1e6', no(R.badSize, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SIZE=1.5', no(R.badSize, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SIZE=0x10', no(R.badSize, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SIZE=١٢', no(R.badSize, 'MAIL')], // Arabic-Indic digits
    ['MAIL FROM:<alice@example.com> SIZE=999999999999999999999', no(R.badSize, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SIZE=1 SIZE=1', no(R.badArgument, 'MAIL')],

    // BODY (RFC 6152)
    ['MAIL FROM:<alice@example.com> BODY=7BIT', mail(alice, {body: '7BIT'})],
    ['MAIL FROM:<alice@example.com> BODY=8BITMIME', mail(alice, {body: '8BITMIME'})],
    ['MAIL FROM:<alice@example.com> body=8bitmime', mail(alice, {body: '8BITMIME'})],
    ['MAIL FROM:<alice@example.com> BODY=BINARYMIME', no(R.badBody, 'MAIL')],
    ['MAIL FROM:<alice@example.com> BODY=8BIT', no(R.badBody, 'MAIL')],
    ['MAIL FROM:<alice@example.com> BODY=', no(R.badBody, 'MAIL')],
    ['MAIL FROM:<alice@example.com> BODY', no(R.badBody, 'MAIL')],
    ['MAIL FROM:<alice@example.com> BODY=7BIT BODY=8BITMIME', no(R.badArgument, 'MAIL')],

    // SMTPUTF8 (RFC 6531)
    ['MAIL FROM:<alice@example.com> SMTPUTF8', mail(alice, {smtputf8: true})],
    ['MAIL FROM:<alice@example.com> smtputf8', mail(alice, {smtputf8: true})],
    ['MAIL FROM:<alice@example.com> SMTPUTF8=yes', no(R.badArgument, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SMTPUTF8=', no(R.badArgument, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SMTPUTF8 SMTPUTF8', no(R.badArgument, 'MAIL')],

    // Combinations, any order
    [
      'MAIL FROM:<alice@example.com> SIZE=100 BODY=8BITMIME SMTPUTF8',
      mail(alice, {size: 100, body: '8BITMIME', smtputf8: true}),
    ],
    ['MAIL FROM:<> SMTPUTF8 BODY=7BIT SIZE=1', mail(nullPath, {size: 1, body: '7BIT', smtputf8: true})],

    // Everything we do not advertise
    ['MAIL FROM:<alice@example.com> AUTH=<>', no(R.unknownParameter, 'MAIL')],
    ['MAIL FROM:<alice@example.com> RET=HDRS', no(R.unknownParameter, 'MAIL')],
    ['MAIL FROM:<alice@example.com> ENVID=abc', no(R.unknownParameter, 'MAIL')],
    ['MAIL FROM:<alice@example.com> X-FOO', no(R.unknownParameter, 'MAIL')],
    ['MAIL FROM:<alice@example.com> SIZE=1 X-FOO=bar', no(R.unknownParameter, 'MAIL')],
  ]
  test.each(cases)('%j', (line, expected) => {
    expect(parseCommand(line)).toEqual(expected)
  })

  test('allowSpaceAfterColon accepts spaces between FROM: and the path', () => {
    expect(parseCommand('MAIL FROM: <alice@example.com> SIZE=1', {allowSpaceAfterColon: true})).toEqual(
      mail(alice, {size: 1}),
    )
    expect(parseCommand('MAIL FROM:   <>', {allowSpaceAfterColon: true})).toEqual(mail(nullPath))
    expect(parseCommand('MAIL FROM: alice@example.com', {allowSpaceAfterColon: true})).toEqual(no(R.badSender, 'MAIL'))
  })
})

describe('parseCommand: RCPT TO', () => {
  const rcpt = (to: Path): ParseResult => ok({verb: 'RCPT', to})
  const postmaster = (written: string): Path => ({
    address: written,
    localPart: '',
    localPartValue: '',
    domain: '',
    isNull: false,
    isPostmaster: true,
    isUtf8: false,
  })
  const cases: Array<[string, ParseResult]> = [
    ['RCPT TO:<alice@example.com>', rcpt(alice)],
    ['rcpt to:<alice@example.com>', rcpt(alice)],
    ['RCPT To:<alice@example.com>', rcpt(alice)],
    ['RCPT TO:<@a.example,@b.example:alice@example.com>', rcpt(alice)],
    ['RCPT TO:<Postmaster>', rcpt(postmaster('Postmaster'))],
    ['RCPT TO:<POSTMASTER>', rcpt(postmaster('POSTMASTER'))],
    ['RCPT TO:<postmaster>', rcpt(postmaster('postmaster'))],
    ['RCPT TO:<postmaster@example.com>', rcpt(mailbox('postmaster', 'example.com'))],
    ['RCPT TO:<alice@[192.0.2.1]>', rcpt(mailbox('alice', '[192.0.2.1]'))],
    ['RCPT TO:<用户@例子.广告>', rcpt(mailbox('用户', '例子.广告', true))],
    [
      'RCPT TO:<"a b"@example.com>',
      rcpt({...mailbox('"a b"', 'example.com'), localPartValue: 'a b'}),
    ],

    ['RCPT', no(R.badArgument, 'RCPT')],
    ['RCPT TO', no(R.badArgument, 'RCPT')],
    ['RCPT FROM:<alice@example.com>', no(R.badArgument, 'RCPT')],
    ['RCPT TO: <alice@example.com>', no(R.badArgument, 'RCPT')],
    ['RCPT TO:<alice@example.com> ', no(R.badArgument, 'RCPT')],
    ['RCPT TO:<alice@example.com>junk', no(R.badArgument, 'RCPT')],

    ['RCPT TO:', no(R.badRecipientSyntax, 'RCPT')],
    ['RCPT TO:<>', no(R.badRecipientSyntax, 'RCPT')],
    ['RCPT TO:alice@example.com', no(R.badRecipientSyntax, 'RCPT')],
    ['RCPT TO:<alice>', no(R.badRecipientSyntax, 'RCPT')],
    ['RCPT TO:<alice@>', no(R.badRecipientSyntax, 'RCPT')],
    ['RCPT TO:<alice@example.com', no(R.badRecipientSyntax, 'RCPT')],
    ['RCPT TO:<"Postmaster">', no(R.badRecipientSyntax, 'RCPT')],
    [`RCPT TO:<alice@${'a'.repeat(64)}.com>`, no(R.badRecipientSyntax, 'RCPT')],

    ['RCPT TO:<alice@example.com> NOTIFY=NEVER', no(R.unknownParameter, 'RCPT')],
    ['RCPT TO:<alice@example.com> ORCPT=rfc822;alice@example.com', no(R.unknownParameter, 'RCPT')],
    ['RCPT TO:<alice@example.com> SIZE=1', no(R.unknownParameter, 'RCPT')],
    ['RCPT TO:<alice@example.com> SMTPUTF8', no(R.unknownParameter, 'RCPT')],
  ]
  test.each(cases)('%j', (line, expected) => {
    expect(parseCommand(line)).toEqual(expected)
  })

  test('allowSpaceAfterColon accepts spaces between TO: and the path', () => {
    expect(parseCommand('RCPT TO: <alice@example.com>', {allowSpaceAfterColon: true})).toEqual(rcpt(alice))
  })
})

describe('parseCommand: BDAT (RFC 3030)', () => {
  const bdat = (size: number, last: boolean): ParseResult => ok({verb: 'BDAT', size, last})
  const cases: Array<[string, ParseResult]> = [
    ['BDAT 0', bdat(0, false)],
    ['BDAT 0 LAST', bdat(0, true)],
    ['BDAT 1000', bdat(1000, false)],
    ['BDAT 1000 LAST', bdat(1000, true)],
    ['bdat 1000 last', bdat(1000, true)],
    ['BDAT 1000 Last', bdat(1000, true)],
    ['BDAT 007', bdat(7, false)],
    [`BDAT ${Number.MAX_SAFE_INTEGER} LAST`, bdat(Number.MAX_SAFE_INTEGER, true)],

    // Size unreadable: nothing to consume
    ['BDAT', no(R.badBdat, 'BDAT')],
    ['BDAT ', no(R.badBdat, 'BDAT')],
    ['BDAT LAST', no(R.badBdat, 'BDAT')],
    ['BDAT  10', no(R.badBdat, 'BDAT')],
    ['BDAT -1', no(R.badBdat, 'BDAT')],
    ['BDAT +1', no(R.badBdat, 'BDAT')],
    ['BDAT 1e3', no(R.badBdat, 'BDAT')],
    ['BDAT 0x10', no(R.badBdat, 'BDAT')],
    ['BDAT 10x LAST', no(R.badBdat, 'BDAT')],
    ['BDAT ١٠', no(R.badBdat, 'BDAT')],
    [`BDAT ${Number.MAX_SAFE_INTEGER + 1}`, no(R.badBdat, 'BDAT')],
    ['BDAT 99999999999999999999999 LAST', no(R.badBdat, 'BDAT')],

    // Size readable, the rest wrong: the session must still consume the octets
    ['BDAT 10 ', no(R.badBdat, 'BDAT', 10)],
    ['BDAT 10 FIRST', no(R.badBdat, 'BDAT', 10)],
    ['BDAT 10 LASTX', no(R.badBdat, 'BDAT', 10)],
    ['BDAT 10 LAST ', no(R.badBdat, 'BDAT', 10)],
    ['BDAT 10 LAST LAST', no(R.badBdat, 'BDAT', 10)],
    ['BDAT 10  LAST', no(R.badBdat, 'BDAT', 10)],
    ['BDAT 10 LAſT', no(R.badBdat, 'BDAT', 10)],
    ['BDAT 10 lASt extra', no(R.badBdat, 'BDAT', 10)],
  ]
  test.each(cases)('%j', (line, expected) => {
    expect(parseCommand(line)).toEqual(expected)
  })
})

/** Every C0 control character and DEL. */
const CONTROLS = [...Array.from({length: 0x20}, (_, i) => String.fromCharCode(i)), '\x7f']

describe('parseCommand: control characters are refused anywhere (501 5.5.4)', () => {
  const lines = [
    'LHLO client.example',
    'MAIL FROM:<alice@example.com> SIZE=10 BODY=8BITMIME',
    'RCPT TO:<alice@example.com>',
    'DATA',
    'RSET',
    'NOOP hello',
    'QUIT',
    'VRFY alice',
    'STARTTLS',
    'HELO client.example',
    'BDAT 10 LAST',
    'XYZZY',
  ]
  const hex = (c: string) => `0x${c.charCodeAt(0).toString(16).padStart(2, '0')}`
  const cases = CONTROLS.flatMap((c) => lines.map((line) => [hex(c), c, line] as const))

  test.each(cases)('%s in %j, at every position', (_name, c, line) => {
    for (let at = 0; at <= line.length; at++) {
      const bad = line.slice(0, at) + c + line.slice(at)
      const r = parseCommand(bad)
      expect(r.ok).toBe(false)
      if (!r.ok) expect(r.reply).toEqual(R.controlCharacters)
    }
  })

  test('a known verb is still named, so the session can count the error against it', () => {
    expect(parseCommand('RCPT TO:<alice@example.com>\r')).toEqual(no(R.controlCharacters, 'RCPT'))
    expect(parseCommand('MAIL\tFROM:<alice@example.com>')).toEqual(no(R.controlCharacters, 'MAIL'))
    expect(parseCommand('XYZZY\n')).toEqual(no(R.controlCharacters))
  })

  test('a BDAT whose size is readable keeps its size, so its octets are consumed', () => {
    expect(parseCommand('BDAT 10\tLAST')).toEqual(no(R.controlCharacters, 'BDAT', 10))
    expect(parseCommand('BDAT 10 LAST\r')).toEqual(no(R.controlCharacters, 'BDAT', 10))
    expect(parseCommand('BDAT 10\x00')).toEqual(no(R.controlCharacters, 'BDAT', 10))
    // The size ends at the first space or control character.
    expect(parseCommand('BDAT 1\x000')).toEqual(no(R.controlCharacters, 'BDAT', 1))
    expect(parseCommand('BDAT 1x\x00')).toEqual(no(R.controlCharacters, 'BDAT'))
    expect(parseCommand(`BDAT ${2 ** 53}\r`)).toEqual(no(R.controlCharacters, 'BDAT'))
    expect(parseCommand('BDAT\t10')).toEqual(no(R.controlCharacters, 'BDAT'))
    expect(parseCommand('BD\x00AT 10')).toEqual(no(R.controlCharacters))
  })

  test('hasControlCharacter agrees with the parser', () => {
    for (const c of CONTROLS) expect(hasControlCharacter(`a${c}b`)).toBe(true)
    expect(hasControlCharacter('plain text with ünïcödé and ~')).toBe(false)
    expect(hasControlCharacter('\x80\x9f')).toBe(false)
  })
})

describe('parseCommand: never throws', () => {
  test('on arbitrary strings and on lines built from command fragments', () => {
    const fragment = fc.constantFrom(
      ...VERBS,
      ' ',
      'FROM:',
      'TO:',
      '<',
      '>',
      '@',
      '"',
      '\\',
      '.',
      ':',
      ',',
      '[',
      ']',
      'IPv6:',
      '=',
      'SIZE',
      'BODY',
      'LAST',
      '1',
      'a',
      'é',
      '\x00',
      '\r',
    )
    const line = fc.oneof(fc.string({unit: 'binary'}), fc.array(fragment, {maxLength: 20}).map((parts) => parts.join('')))
    fc.assert(
      fc.property(line, (text) => {
        const r = parseCommand(text)
        if (!r.ok) expect([500, 501, 555]).toContain(r.reply.code)
      }),
      {numRuns: 3000},
    )
  })
})

describe('formatCommand', () => {
  const cases: Array<[OutgoingCommand, string]> = [
    [{verb: 'LHLO', domain: 'client.example'}, 'LHLO client.example'],
    [{verb: 'LHLO', domain: '[192.0.2.1]'}, 'LHLO [192.0.2.1]'],
    [{verb: 'MAIL', from: 'alice@example.com'}, 'MAIL FROM:<alice@example.com>'],
    [{verb: 'MAIL', from: ''}, 'MAIL FROM:<>'],
    [{verb: 'MAIL', from: 'a@b.c', params: {}}, 'MAIL FROM:<a@b.c>'],
    [{verb: 'MAIL', from: 'a@b.c', params: {size: 0}}, 'MAIL FROM:<a@b.c> SIZE=0'],
    [
      {verb: 'MAIL', from: 'a@b.c', params: {smtputf8: true, body: '8BITMIME', size: 123}},
      'MAIL FROM:<a@b.c> SIZE=123 BODY=8BITMIME SMTPUTF8',
    ],
    [{verb: 'MAIL', from: 'a@b.c', params: {body: '7BIT', smtputf8: false}}, 'MAIL FROM:<a@b.c> BODY=7BIT'],
    [{verb: 'RCPT', to: 'bob@example.org'}, 'RCPT TO:<bob@example.org>'],
    [{verb: 'RCPT', to: '"bob smith"@example.org'}, 'RCPT TO:<"bob smith"@example.org>'],
    [{verb: 'RCPT', to: 'Postmaster'}, 'RCPT TO:<Postmaster>'],
    [{verb: 'DATA'}, 'DATA'],
    [{verb: 'BDAT', size: 0, last: true}, 'BDAT 0 LAST'],
    [{verb: 'BDAT', size: 65536, last: false}, 'BDAT 65536'],
    [{verb: 'RSET'}, 'RSET'],
    [{verb: 'NOOP'}, 'NOOP'],
    [{verb: 'QUIT'}, 'QUIT'],
    [{verb: 'VRFY', argument: 'alice'}, 'VRFY alice'],
    [{verb: 'STARTTLS'}, 'STARTTLS'],
  ]
  test.each(cases)('%j -> %j', (cmd, line) => {
    expect(formatCommand(cmd)).toBe(line)
  })

  const refused: Array<[string, OutgoingCommand, RegExp]> = [
    ['CRLF in a recipient', {verb: 'RCPT', to: 'a@b.c>\r\nRCPT TO:<evil@x.y'}, /control character/],
    ['LF in a sender', {verb: 'MAIL', from: 'a@b.c\nDATA'}, /sender address.*control character/],
    ['NUL in a sender', {verb: 'MAIL', from: 'a\x00@b.c'}, /control character/],
    ['bracket in a recipient', {verb: 'RCPT', to: 'a@b.c> NOTIFY=NEVER'}, /'<' or '>'/],
    ['bracket in a sender', {verb: 'MAIL', from: '<a@b.c>'}, /'<' or '>'/],
    ['CR in the LHLO name', {verb: 'LHLO', domain: 'x\rQUIT'}, /LHLO name.*control character/],
    ['bracket in the LHLO name', {verb: 'LHLO', domain: '<x>'}, /'<' or '>'/],
    ['empty LHLO name', {verb: 'LHLO', domain: ''}, /non-empty/],
    ['space in the LHLO name', {verb: 'LHLO', domain: 'a b'}, /one non-empty word/],
    ['LF in VRFY', {verb: 'VRFY', argument: 'a\nQUIT'}, /VRFY argument.*control character/],
    ['empty VRFY', {verb: 'VRFY', argument: ''}, /non-empty/],
    ['negative SIZE', {verb: 'MAIL', from: 'a@b.c', params: {size: -1}}, /SIZE must be/],
    ['fractional SIZE', {verb: 'MAIL', from: 'a@b.c', params: {size: 1.5}}, /SIZE must be/],
    ['NaN BDAT size', {verb: 'BDAT', size: Number.NaN, last: true}, /BDAT size must be/],
    ['unsafe BDAT size', {verb: 'BDAT', size: 2 ** 53, last: false}, /BDAT size must be/],
  ]
  test.each(refused)('refuses %s', (_name, cmd, message) => {
    expect(() => formatCommand(cmd)).toThrow(TypeError)
    expect(() => formatCommand(cmd)).toThrow(message)
  })

  test.each(CONTROLS)('refuses control character %j in every address and name', (c) => {
    expect(() => formatCommand({verb: 'MAIL', from: `a${c}@b.c`})).toThrow(TypeError)
    expect(() => formatCommand({verb: 'RCPT', to: `a@b.c${c}`})).toThrow(TypeError)
    expect(() => formatCommand({verb: 'LHLO', domain: `${c}client`})).toThrow(TypeError)
    expect(() => formatCommand({verb: 'VRFY', argument: `a${c}`})).toThrow(TypeError)
  })
})

describe('parseCommand(formatCommand(x)) round trip', () => {
  const atext = fc.constantFrom(
    ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&\'*+-/=?^_`{|}~'.split(''),
    'é',
    'ü',
    'ß',
    '用',
    '😀',
  )
  const atom = fc.array(atext, {minLength: 1, maxLength: 8}).map((a) => a.join(''))
  const dotString = fc.array(atom, {minLength: 1, maxLength: 3}).map((a) => a.join('.'))
  // Printable ASCII (backslash and quote escaped) but the brackets formatCommand refuses, space, non-ASCII.
  const qchar = fc.oneof(
    fc
      .integer({min: 0x20, max: 0x7e})
      .map((n) => String.fromCharCode(n))
      .filter((c) => c !== '<' && c !== '>'),
    fc.constantFrom('é', '中'),
  )
  const quoted = fc.array(qchar, {maxLength: 12}).map((chars) => ({
    written: `"${chars.map((c) => (c === '"' || c === '\\' ? `\\${c}` : c)).join('')}"`,
    value: chars.join(''),
  }))
  const local = fc.oneof(
    dotString.map((s) => ({written: s, value: s})),
    quoted,
  )
  const letDig = fc.constantFrom(...'abcxyzABCXYZ0189'.split(''), 'ä', '例')
  const label = fc
    .tuple(letDig, fc.array(fc.constantFrom(...'abz09-'.split(''), 'ö'), {maxLength: 6}), letDig)
    .map(([a, mid, b]) => `${a}${mid.join('')}${b}`)
  const byte = fc.integer({min: 0, max: 255})
  const hex = fc.integer({min: 0, max: 0xffff}).map((n) => n.toString(16))
  const domain = fc.oneof(
    fc.array(label, {minLength: 1, maxLength: 4}).map((a) => a.join('.')),
    fc.tuple(byte, byte, byte, byte).map((b) => `[${b.join('.')}]`),
    fc.array(hex, {minLength: 8, maxLength: 8}).map((g) => `[IPv6:${g.join(':')}]`),
    fc
      .tuple(fc.array(hex, {maxLength: 3}), fc.array(hex, {maxLength: 3}))
      .map(([l, r]) => `[IPv6:${l.join(':')}::${r.join(':')}]`),
  )
  const address = fc
    .tuple(local, domain)
    .map(([l, d]) => ({address: `${l.written}@${d}`, localPart: l.written, localPartValue: l.value, domain: d}))
    .filter((a) => Buffer.byteLength(a.localPart) <= 64 && Buffer.byteLength(a.address) + 2 <= 256)
  const params = fc.record(
    {
      size: fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)),
      body: fc.constantFrom('7BIT' as const, '8BITMIME' as const),
      smtputf8: fc.constant(true),
    },
    {requiredKeys: []},
  )
  const nonAscii = (s: string) => /[^\x00-\x7f]/.test(s)

  test('MAIL FROM with generated addresses and parameters', () => {
    fc.assert(
      fc.property(address, params, (a, p) => {
        const r = parseCommand(formatCommand({verb: 'MAIL', from: a.address, params: p}))
        expect(r).toEqual(
          ok({
            verb: 'MAIL',
            from: {...a, isNull: false, isPostmaster: false, isUtf8: nonAscii(a.address)},
            params: p,
          }),
        )
      }),
      {numRuns: 1000},
    )
  })

  test('MAIL FROM:<> with generated parameters', () => {
    fc.assert(
      fc.property(params, (p) => {
        expect(parseCommand(formatCommand({verb: 'MAIL', from: '', params: p}))).toEqual(
          ok({verb: 'MAIL', from: nullPath, params: p}),
        )
      }),
    )
  })

  test('RCPT TO with generated addresses', () => {
    fc.assert(
      fc.property(address, (a) => {
        expect(parseCommand(formatCommand({verb: 'RCPT', to: a.address}))).toEqual(
          ok({verb: 'RCPT', to: {...a, isNull: false, isPostmaster: false, isUtf8: nonAscii(a.address)}}),
        )
      }),
      {numRuns: 1000},
    )
  })

  test('BDAT with generated sizes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)), fc.boolean(), (size, last) => {
        expect(parseCommand(formatCommand({verb: 'BDAT', size, last}))).toEqual(ok({verb: 'BDAT', size, last}))
      }),
    )
  })

  test('LHLO with generated domains, and the argument-free verbs', () => {
    fc.assert(
      fc.property(fc.oneof(fc.array(label, {minLength: 1, maxLength: 4}).map((a) => a.join('.'))), (d) => {
        expect(parseCommand(formatCommand({verb: 'LHLO', domain: d}))).toEqual(ok({verb: 'LHLO', domain: d}))
      }),
    )
    for (const verb of ['DATA', 'RSET', 'NOOP', 'QUIT', 'STARTTLS'] as const) {
      expect(parseCommand(formatCommand({verb}))).toEqual(ok({verb}))
    }
    expect(parseCommand(formatCommand({verb: 'VRFY', argument: 'alice smith'}))).toEqual(
      ok({verb: 'VRFY', argument: 'alice smith'}),
    )
  })
})
