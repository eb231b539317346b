import { createHash } from 'node:crypto';
import { bareKeyTenant, namedLikeBareKeys, parseApiKeys } from './api-keys';
import { parseEnv } from './env.schema';

describe('API_KEYS', () => {
  it('reads tenant:key pairs, several keys per tenant, and bare keys as tenants of their own', () => {
    const keys = parseApiKeys('alice:k1, alice:k2,bob:k3,lonely,name:part1:part2');
    expect(keys.map((key) => key.tenant)).toEqual(['alice', 'alice', 'bob', bareKeyTenant('lonely'), 'name']);
    expect(keys[4].digest).toEqual(createHash('sha256').update('part1:part2').digest());
  });

  it("names a bare key's tenant by a slow derivation, not by a prefix of the key's plain sha256", () => {
    const name = bareKeyTenant('a-bare-key');
    expect(name).toMatch(/^key-[0-9a-f]{16}$/);
    expect(name).toBe(bareKeyTenant('a-bare-key'));
    expect(name.slice(4)).not.toBe(createHash('sha256').update('a-bare-key').digest('hex').slice(0, 16));
  });

  it('refuses a value that names no key, bad tenant names, empty keys, keys a header cannot carry, and one key for two tenants', () => {
    for (const [value, message] of [
      [',', /names no key/],
      [' , ', /names no key/],
      ['bad/tenant:k', /tenant name/],
      ['acme:', /empty key/],
      ['a:same,b:same', /two tenants/],
      ['acme:clé-secrète', /HTTP header cannot carry/],
      ['schlüssel', /HTTP header cannot carry/],
      ['acme:two words', /HTTP header cannot carry/],
      ['alice:k1,Alice:k2', /differ only in case/],
    ] as const) {
      expect(() => parseApiKeys(value)).toThrow(message);
      expect(() => parseEnv({ API_KEYS: value })).toThrow(/API_KEYS/);
    }
    expect(parseApiKeys('')).toEqual([]);
  });

  it("names the tenants given a bare key's form of name without that bare key (a name copied from the logs would take over its data)", () => {
    const copied = bareKeyTenant('old-bare-key');
    expect(namedLikeBareKeys(parseApiKeys(`${copied}:new-key,alice:k1`))).toEqual([copied]);
    // Beside its own bare key (a second key for that tenant), or a name that only starts with "key-": nothing to say.
    expect(namedLikeBareKeys(parseApiKeys(`old-bare-key,${copied}:new-key,key-holder:k2`))).toEqual([]);
  });
});
