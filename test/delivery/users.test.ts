import {writeFile} from 'node:fs/promises'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {loadUsersFile, parseUsersFile, UsersFileError} from '../../src/delivery/users.js'
import {cleanup, mkPath, tempRoot} from './helpers.js'

const GOOD = `# users of example.com
alice@example.com
Bob@Example.com   quota=500M   # Bob has a quota
<carol@example.org> quota=4k

dave@example.org quota=none
erin@example.org quota=0
`

describe('parseUsersFile', () => {
  test('reads addresses, quotas, comments and blank lines', () => {
    const t = parseUsersFile(GOOD, 'users')
    expect(t.size).toBe(5)
    expect(t.lookup(mkPath('alice@example.com'))).toMatchObject({address: 'alice@example.com', line: 2})
    expect(t.lookup(mkPath('alice@example.com'))?.quota).toBeUndefined()
    expect(t.lookup(mkPath('bob@example.com'))?.quota).toBe(500 * 1024 * 1024)
    expect(t.lookup(mkPath('carol@example.org'))?.quota).toBe(4096)
    expect(t.lookup(mkPath('dave@example.org'))?.quota).toBeNull()
    expect(t.lookup(mkPath('erin@example.org'))?.quota).toBeNull()
  })

  test.each(['ALICE@EXAMPLE.COM', 'Alice@example.com', 'alice@Example.Com'])('lookup is case-insensitive: %s', (a) => {
    expect(parseUsersFile(GOOD).lookup(mkPath(a))?.line).toBe(2)
  })

  test('unknown users and unsafe addresses are not found', () => {
    const t = parseUsersFile(GOOD)
    expect(t.lookup(mkPath('mallory@example.com'))).toBeUndefined()
    expect(t.lookup(mkPath('../alice@example.com'))).toBeUndefined()
    expect(t.lookupAddress('BOB@example.com')?.line).toBe(3)
  })

  test('CRLF line ends are fine', () => {
    expect(parseUsersFile('a@example.com\r\nb@example.com quota=1M\r\n').size).toBe(2)
  })

  test.each([
    ['not an address', 'alice@example.com\nalice\n', 2, /local-part@domain/],
    ['empty domain', 'bob@\n', 1, /local-part@domain/],
    ['traversal', '# c\n\n../x@example.com\n', 3, /cannot be used/],
    ['slash', 'a/b@example.com\n', 1, /cannot be used/],
    ['bad quota', 'a@example.com quota=lots\n', 1, /invalid quota "lots".*K, M, G/],
    ['negative quota', 'a@example.com quota=-5M\n', 1, /invalid quota/],
    ['unknown option', 'a@example.com size=5M\n', 1, /unknown option "size=5M".*quota=SIZE/],
    ['bare word option', 'a@example.com big\n', 1, /unknown option/],
    ['quota twice', 'a@example.com quota=1M quota=2M\n', 1, /quota given twice/],
    ['duplicate', 'a@example.com\nx@example.com\nA@Example.com\n', 3, /already listed on line 1/],
    ['unbalanced bracket', '<a@example.com\n', 1, /angle brackets/],
    ['control character', 'a@example.com\u0001\n', 1, /control characters/],
  ])('%s -> error with line number', (_name, text, line, message) => {
    let caught: unknown
    try {
      parseUsersFile(text, '/etc/lmtp/users')
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(UsersFileError)
    const e = caught as UsersFileError
    expect(e.file).toBe('/etc/lmtp/users')
    expect(e.line).toBe(line)
    expect(e.message).toMatch(new RegExp(`^/etc/lmtp/users:${line}: `))
    expect(e.problem).toMatch(message)
  })
})

describe('loadUsersFile', () => {
  let dir: string
  beforeAll(async () => {
    dir = await tempRoot()
  })
  afterAll(async () => cleanup(dir))

  test('reads a file and names it in errors', async () => {
    const good = path.join(dir, 'users')
    await writeFile(good, GOOD)
    expect((await loadUsersFile(good)).size).toBe(5)
    const bad = path.join(dir, 'bad')
    await writeFile(bad, 'ok@example.com\nnope\n')
    await expect(loadUsersFile(bad)).rejects.toThrow(`${bad}:2:`)
  })

  test('a missing file says which flag to check', async () => {
    await expect(loadUsersFile(path.join(dir, 'missing'))).rejects.toThrow(/ENOENT.*--users/)
  })
})
