import {describe, expect, test} from 'vitest'
import {
  asciiUpper,
  formatPath,
  isAddressLiteral,
  isDomain,
  isDomainOrLiteral,
  PATH_LIMITS,
  type Path,
  parsePath,
  utf8Length,
} from '../../src/protocol/address.js'
import {R} from '../../src/protocol/replies.js'

const plain = {isNull: false, isPostmaster: false, isUtf8: false}

describe('parsePath: valid paths', () => {
  const cases: Array<[string, 'sender' | 'recipient', Path, string]> = [
    [
      '<alice@example.com>',
      'sender',
      {...plain, address: 'alice@example.com', localPart: 'alice', localPartValue: 'alice', domain: 'example.com'},
      '',
    ],
    [
      '<alice@example.com> SIZE=10',
      'sender',
      {...plain, address: 'alice@example.com', localPart: 'alice', localPartValue: 'alice', domain: 'example.com'},
      ' SIZE=10',
    ],
    ['<>', 'sender', {...plain, isNull: true, address: '', localPart: '', localPartValue: '', domain: ''}, ''],
    ['<> BODY=7BIT', 'sender', {...plain, isNull: true, address: '', localPart: '', localPartValue: '', domain: ''}, ' BODY=7BIT'],
    ['<Postmaster>', 'recipient', {...plain, isPostmaster: true, address: 'Postmaster', localPart: '', localPartValue: '', domain: ''}, ''],
    ['<pOsTmAsTeR>', 'recipient', {...plain, isPostmaster: true, address: 'pOsTmAsTeR', localPart: '', localPartValue: '', domain: ''}, ''],
    [
      '<postmaster@example.com>',
      'recipient',
      {...plain, address: 'postmaster@example.com', localPart: 'postmaster', localPartValue: 'postmaster', domain: 'example.com'},
      '',
    ],
    [
      '<@relay.example,@hop2.example:bob@example.org>',
      'recipient',
      {...plain, address: 'bob@example.org', localPart: 'bob', localPartValue: 'bob', domain: 'example.org'},
      '',
    ],
    [
      '<@relay.example:bob@example.org>',
      'sender',
      {...plain, address: 'bob@example.org', localPart: 'bob', localPartValue: 'bob', domain: 'example.org'},
      '',
    ],
    [
      '<"john doe"@example.com>',
      'recipient',
      {...plain, address: '"john doe"@example.com', localPart: '"john doe"', localPartValue: 'john doe', domain: 'example.com'},
      '',
    ],
    [
      '<"a\\"b\\\\c"@example.com>',
      'recipient',
      {...plain, address: '"a\\"b\\\\c"@example.com', localPart: '"a\\"b\\\\c"', localPartValue: 'a"b\\c', domain: 'example.com'},
      '',
    ],
    [
      '<"a>b@c"@example.com> X',
      'recipient',
      {...plain, address: '"a>b@c"@example.com', localPart: '"a>b@c"', localPartValue: 'a>b@c', domain: 'example.com'},
      ' X',
    ],
    ['<""@example.com>', 'recipient', {...plain, address: '""@example.com', localPart: '""', localPartValue: '', domain: 'example.com'}, ''],
    [
      "<a.b+tag!#$%&'*/=?^_`{|}~-@x.y>",
      'recipient',
      {
        ...plain,
        address: "a.b+tag!#$%&'*/=?^_`{|}~-@x.y",
        localPart: "a.b+tag!#$%&'*/=?^_`{|}~-",
        localPartValue: "a.b+tag!#$%&'*/=?^_`{|}~-",
        domain: 'x.y',
      },
      '',
    ],
    ['<u@localhost>', 'recipient', {...plain, address: 'u@localhost', localPart: 'u', localPartValue: 'u', domain: 'localhost'}, ''],
    ['<u@[192.0.2.1]>', 'recipient', {...plain, address: 'u@[192.0.2.1]', localPart: 'u', localPartValue: 'u', domain: '[192.0.2.1]'}, ''],
    [
      '<u@[IPv6:2001:db8::1]>',
      'recipient',
      {...plain, address: 'u@[IPv6:2001:db8::1]', localPart: 'u', localPartValue: 'u', domain: '[IPv6:2001:db8::1]'},
      '',
    ],
    [
      '<josé@exämple.com>',
      'recipient',
      {...plain, isUtf8: true, address: 'josé@exämple.com', localPart: 'josé', localPartValue: 'josé', domain: 'exämple.com'},
      '',
    ],
    ['<用户@例子.广告>', 'sender', {...plain, isUtf8: true, address: '用户@例子.广告', localPart: '用户', localPartValue: '用户', domain: '例子.广告'}, ''],
    ['<"ü x"@a.b>', 'recipient', {...plain, isUtf8: true, address: '"ü x"@a.b', localPart: '"ü x"', localPartValue: 'ü x', domain: 'a.b'}, ''],
  ]
  test.each(cases)('%s as %s', (text, kind, path, rest) => {
    expect(parsePath(text, kind)).toEqual({ok: true, path, rest})
  })
})

describe('parsePath: refused paths', () => {
  const invalid: string[] = [
    '',
    'alice@example.com',
    'alice@example.com>',
    '<alice@example.com',
    '<alice>',
    '<alice@>',
    '<@example.com>',
    '<alice@@example.com>',
    '<.alice@example.com>',
    '<alice.@example.com>',
    '<al..ice@example.com>',
    '<al ice@example.com>',
    '<al(ice@example.com>',
    '<al[ice@example.com>',
    '<al"ice@example.com>',
    '<"unterminated@example.com>',
    '<"a"b"@example.com>',
    '<"a"x@example.com>',
    '<"a\\\u00e9"@example.com>',
    '<alice@example..com>',
    '<alice@.example.com>',
    '<alice@example.com.>',
    '<alice@-example.com>',
    '<alice@example-.com>',
    '<alice@exa_mple.com>',
    '<alice@exa mple.com>',
    '<alice@[300.1.1.1]>',
    '<alice@[1.2.3]>',
    '<alice@[1.2.3.4.5]>',
    '<alice@[IPv6:1::2::3]>',
    '<alice@[IPv6:12345::1]>',
    '<alice@[IPv6:fe80::1%eth0]>',
    '<alice@[tag:content]>',
    '<alice@[]>',
    '<alice@[1.2.3.4>',
    '<alice@1.2.3.4]>',
    '<alice@example.com\ufffd>',
    '<\ufffd@example.com>',
    '<@relay.example bob@example.org>',
    '<@relay.example,bob@example.org>',
    '<@:bob@example.org>',
    '<@relay..example:bob@example.org>',
    '<relay.example:bob@example.org>',
    '<@relay.example:Postmaster>',
    '<"Postmaster">',
    '<<alice@example.com>>',
    ' <alice@example.com>',
  ]
  test.each(invalid)('sender %j -> badSender', (text) => {
    expect(parsePath(text, 'sender')).toEqual({ok: false, reply: R.badSender})
  })
  test.each(invalid)('recipient %j -> badRecipientSyntax', (text) => {
    expect(parsePath(text, 'recipient')).toEqual({ok: false, reply: R.badRecipientSyntax})
  })

  test('<> is only a sender', () => {
    expect(parsePath('<>', 'recipient')).toEqual({ok: false, reply: R.badRecipientSyntax})
  })
  test('<Postmaster> without a domain is only a recipient', () => {
    expect(parsePath('<Postmaster>', 'sender')).toEqual({ok: false, reply: R.badSender})
  })
})

describe('parsePath: RFC 5321 4.5.3.1 limits, counted in UTF-8 octets', () => {
  const domain63 = `${'d'.repeat(63)}`
  // 255 octets: 4 labels of 63 plus 3 dots = 255.
  const domain255 = [domain63, domain63, domain63, domain63].join('.')
  const cases: Array<[string, string, boolean]> = [
    ['local part of 64 octets', `<${'a'.repeat(64)}@x.y>`, true],
    ['local part of 65 octets', `<${'a'.repeat(65)}@x.y>`, false],
    ['local part of 64 octets in 32 two-octet characters', `<${'é'.repeat(32)}@x.y>`, true],
    ['local part of 66 octets in 33 two-octet characters', `<${'é'.repeat(33)}@x.y>`, false],
    ['quoted local part of 64 octets including the quotes', `<"${'a'.repeat(62)}"@x.y>`, true],
    ['quoted local part of 65 octets including the quotes', `<"${'a'.repeat(63)}"@x.y>`, false],
    ['label of 63 octets', `<a@${domain63}.com>`, true],
    ['label of 64 octets', `<a@${domain63}d.com>`, false],
    ['path of 256 octets with brackets', `<${'a'.repeat(56)}@${domain63}.${domain63}.${domain63}.${'e'.repeat(5)}>`, true],
    ['path of 257 octets with brackets', `<${'a'.repeat(57)}@${domain63}.${domain63}.${domain63}.${'e'.repeat(5)}>`, false],
    ['domain of 255 octets (path too long anyway)', `<a@${domain255}>`, false],
  ]
  test.each(cases)('%s', (_name, text, ok) => {
    expect(parsePath(text, 'recipient').ok).toBe(ok)
    if (!ok) expect(parsePath(text, 'sender')).toEqual({ok: false, reply: R.badSender})
  })
  test('the table above really sits at the limits', () => {
    expect(utf8Length(`<${'a'.repeat(56)}@${domain63}.${domain63}.${domain63}.${'e'.repeat(5)}>`)).toBe(PATH_LIMITS.path)
    expect(utf8Length(domain255)).toBe(PATH_LIMITS.domain)
    expect(utf8Length('é'.repeat(32))).toBe(PATH_LIMITS.localPart)
  })
})

describe('isDomain / isAddressLiteral', () => {
  const domains: Array<[string, boolean]> = [
    ['example.com', true],
    ['EXAMPLE.COM', true],
    ['a', true],
    ['1.2.3.4', true],
    ['xn--bcher-kva.example', true],
    ['a-b.c', true],
    ['bücher.example', true],
    ['例子.广告', true],
    ['', false],
    ['.', false],
    ['a.', false],
    ['.a', false],
    ['a..b', false],
    ['-a.b', false],
    ['a-.b', false],
    ['a_b.c', false],
    ['a b.c', false],
    ['[1.2.3.4]', false],
    [`${'a'.repeat(64)}.com`, false],
    [`${'a'.repeat(63)}.com`, true],
    [Array(128).fill('a').join('.'), true],
    [Array(129).fill('a').join('.'), false],
  ]
  test.each(domains)('isDomain(%j) = %s', (text, expected) => {
    expect(isDomain(text)).toBe(expected)
    if (!text.startsWith('[')) expect(isDomainOrLiteral(text)).toBe(expected)
  })

  const literals: Array<[string, boolean]> = [
    ['[192.0.2.1]', true],
    ['[0.0.0.0]', true],
    ['[255.255.255.255]', true],
    ['[001.002.003.004]', true],
    ['[256.1.1.1]', false],
    ['[1.2.3]', false],
    ['[1.2.3.4.]', false],
    ['[1.2.3.-4]', false],
    ['[1234.1.1.1]', false],
    ['192.0.2.1', false],
    ['[IPv6:2001:db8:0:0:0:0:0:1]', true],
    ['[ipv6:2001:DB8::1]', true],
    ['[IPv6:::1]', true],
    ['[IPv6:::]', true],
    ['[IPv6:1::]', true],
    ['[IPv6:1:2:3::4:5:6]', true],
    ['[IPv6:1:2:3:4::5:6:7]', false],
    ['[IPv6:1:2:3:4:5:6:7]', false],
    ['[IPv6:1:2:3:4:5:6:7:8:9]', false],
    ['[IPv6:1::2::3]', false],
    ['[IPv6:1:::2]', false],
    ['[IPv6::1]', false],
    ['[IPv6:1:]', false],
    ['[IPv6:12345::]', false],
    ['[IPv6:g::1]', false],
    ['[IPv6:::ffff:192.0.2.1]', true],
    ['[IPv6:1:2:3:4:5:6:192.0.2.1]', true],
    ['[IPv6:1:2:3:4:5:192.0.2.1]', false],
    ['[IPv6:1:2:3:4::192.0.2.1]', true],
    ['[IPv6:1:2:3:4:5::192.0.2.1]', false],
    ['[IPv6:::300.0.2.1]', false],
    ['[IPv6:192.0.2.1]', false],
    ['[IPv6:fe80::1%25eth0]', false],
    ['[IPv6:]', false],
    ['[IPv6 ::1]', false],
    ['[X-tag:stuff]', false],
    ['[]', false],
    ['[', false],
  ]
  test.each(literals)('isAddressLiteral(%j) = %s', (text, expected) => {
    expect(isAddressLiteral(text)).toBe(expected)
    if (text.startsWith('[')) expect(isDomainOrLiteral(text)).toBe(expected)
  })
})

describe('helpers', () => {
  test('asciiUpper leaves non-ASCII letters alone (ſ and ı would otherwise become S and I)', () => {
    expect(asciiUpper('last ſ ı é')).toBe('LAST ſ ı é')
  })
  test('formatPath brackets, and gives <> for the null path', () => {
    expect(formatPath('')).toBe('<>')
    expect(formatPath('a@b.c')).toBe('<a@b.c>')
  })
})
