import path from 'node:path'
import {describe, expect, test} from 'vitest'
import {addressKey, isInside, normaliseDomain, normaliseLocalPart, resolveMailbox} from '../../src/delivery/mailbox.js'
import {mkPath, UNSAFE_LOCAL_PARTS} from './helpers.js'

const ROOT = path.resolve('/srv/mail')

describe('resolveMailbox: ordinary recipients', () => {
  test.each([
    ['alice@example.com', 'example.com/alice'],
    ['Alice@Example.COM', 'example.com/alice'],
    ['first.last@example.com', 'first.last@example.com'.replace(/^(.*)@(.*)$/, '$2/$1')],
    ['a+tag@sub.example.org', 'sub.example.org/a+tag'],
    ["o'brien@example.com", "example.com/o'brien"],
    ['new@example.com', 'example.com/new'],
    ['user@example.com.', 'example.com/user'],
    ['user@localhost', 'localhost/user'],
    ['JÖRG@bücher.example', 'bücher.example/jörg'],
    ['用户@例子.测试', '例子.测试/用户'],
  ])('%s -> %s', (address, name) => {
    const r = resolveMailbox(ROOT, mkPath(address))
    expect(r.ok && r.mailbox.name).toBe(name)
    expect(r.ok && r.mailbox.dir).toBe(path.join(ROOT, ...name.split('/')))
  })

  test('NFC normalisation makes composed and decomposed forms one mailbox', () => {
    const composed = resolveMailbox(ROOT, mkPath('j\u00f6rg@example.com'))
    const decomposed = resolveMailbox(ROOT, mkPath('jo\u0308rg@example.com'))
    expect(composed.ok && decomposed.ok && composed.mailbox.dir === decomposed.mailbox.dir).toBe(true)
  })

  test('quoted local parts use the unquoted value', () => {
    const r = resolveMailbox(ROOT, mkPath('"alice"@example.com', 'alice'))
    expect(r.ok && r.mailbox.name).toBe('example.com/alice')
  })
})

describe('resolveMailbox: postmaster', () => {
  test.each(['Postmaster', 'postmaster@example.com', 'POSTMASTER@other.example', 'postmaster@[192.0.2.1]'])(
    '%s -> ROOT/postmaster',
    (address) => {
      const r = resolveMailbox(ROOT, mkPath(address))
      expect(r.ok && r.mailbox).toMatchObject({name: 'postmaster', dir: path.join(ROOT, 'postmaster'), postmaster: true})
    },
  )

  test('the dotless domain "postmaster" is reserved (it would nest inside the postmaster Maildir)', () => {
    expect(resolveMailbox(ROOT, mkPath('tmp@postmaster')).ok).toBe(false)
  })
})


describe('resolveMailbox refuses what cannot map safely', () => {
  test.each(UNSAFE_LOCAL_PARTS)('%s', (_name, value) => {
    const r = resolveMailbox(ROOT, mkPath(`x@example.com`, value))
    expect(r.ok).toBe(false)
    expect(normaliseLocalPart(value).ok).toBe(false)
  })

  test('64 octets is still fine', () => {
    expect(normaliseLocalPart('a'.repeat(64)).ok).toBe(true)
  })

  test.each([
    ['empty', ''],
    ['traversal', '..'],
    ['slash', 'a/b.example'],
    ['backslash', 'a\\b'],
    ['leading dot', '.example.com'],
    ['empty label', 'a..b'],
    ['address literal', '[192.0.2.1]'],
    ['IPv6 literal', '[IPv6:::1]'],
    ['percent', 'ex%2fample.com'],
    ['underscore label', 'a_b.example'],
    ['hyphen edge', '-a.example'],
    ['NUL', 'a\u0000.example'],
    ['fullwidth dot', 'example\uff0ecom'],
    ['division slash', 'a\u2215b.example'],
    ['reserved', 'postmaster'],
    ['overlong label', `${'a'.repeat(64)}.example`],
    ['overlong domain', `${'a.'.repeat(128)}com`],
  ])('domain: %s', (_name, domain) => {
    expect(normaliseDomain(domain).ok).toBe(false)
    expect(resolveMailbox(ROOT, mkPath(`alice@${domain}`)).ok).toBe(false)
  })

  test('the null path has no mailbox', () => {
    expect(resolveMailbox(ROOT, mkPath('')).ok).toBe(false)
  })
})

describe('helpers', () => {
  test.each([
    ['/srv/mail', '/srv/mail/a', true],
    ['/srv/mail', '/srv/mail', false],
    ['/srv/mail', '/srv/mailx/a', false],
    ['/srv/mail', '/srv', false],
    ['/srv/mail', '/srv/mail/../x', false],
  ])('isInside(%s, %s) = %s', (root, candidate, expected) => {
    expect(isInside(path.resolve(root), path.resolve(candidate))).toBe(expected)
  })

  test.each([
    ['Alice@Example.com', 'alice@example.com'],
    ['"alice"@example.com', 'alice@example.com'],
    ['postmaster@x.example', 'postmaster'],
    ['Postmaster', 'postmaster'],
  ])('addressKey(%s) = %s', (address, key) => {
    const k = addressKey(address)
    expect(k.ok && k.key).toBe(key)
  })

  test.each(['alice', '@example.com', 'alice@', '../x@example.com', 'a/b@example.com'])('addressKey(%s) fails', (address) => {
    expect(addressKey(address).ok).toBe(false)
  })
})
