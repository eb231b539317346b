import { AddressPolicy } from './address-policy';

/** Pure classification: nothing here opens a connection. */
describe('AddressPolicy', () => {
  const policy = new AddressPolicy('');
  const refused: [string, string][] = [
    ['127.0.0.1', 'loopback'],
    ['127.0.0.2', 'loopback'],
    ['::1', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.5.4', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'linkLocal'],
    ['fe80::1', 'linkLocal'],
    ['100.64.0.1', 'carrierGradeNat'],
    ['224.0.0.251', 'multicast'],
    ['ff02::1', 'multicast'],
    ['fd00::1', 'uniqueLocal'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['192.0.2.10', 'reserved'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:169.254.169.254', 'linkLocal'],
    ['::ffff:10.0.0.1', 'private'],
    ['64:ff9b::7f00:1', 'rfc6052'],
    ['2002:7f00:1::', '6to4'],
  ];

  it.each(refused)('refuses %s (%s)', (address, range) => {
    expect(policy.check(address)).toEqual({ allowed: false, range });
  });

  it('allows public unicast, IPv4 and IPv6', () => {
    expect(policy.check('93.184.216.34').allowed).toBe(true);
    expect(policy.check('2606:2800:220:1:248:1893:25c8:1946').allowed).toBe(true);
    expect(policy.check('::ffff:93.184.216.34').allowed).toBe(true);
  });

  it('allows only IPv6 global unicast (2000::/3): IPv4-compatible ::a.b.c.d and the rest of ::/8 and unassigned space are refused', () => {
    for (const address of ['::127.0.0.1', '::7f00:1', '::10.0.0.1', '::a9fe:a9fe', '::93.184.216.34', '::2', '100::1', '400::1', 'c000::1', 'e000::1']) {
      expect([address, policy.check(address).allowed]).toEqual([address, false]);
    }
    // The bracketed URL form reaches the policy as the address inside the brackets.
    expect(new URL('http://[::127.0.0.1]/').hostname).toBe('[::7f00:1]');
    expect(policy.check('2001:4860:4860::8888').allowed).toBe(true);
  });

  it('judges decimal, hex and octal IPv4 forms as the address they are (the URL parser canonicalises them)', () => {
    for (const host of ['2130706433', '0x7f.1', '0177.0.0.1', '0x7f000001', '127.1']) {
      const hostname = new URL(`http://${host}/`).hostname;
      expect(hostname).toBe('127.0.0.1');
      expect(policy.check(hostname).allowed).toBe(false);
    }
    expect(new URL('http://0xa9fea9fe/').hostname).toBe('169.254.169.254');
  });

  it('FETCH_ALLOW_HOSTS opens exactly the listed addresses, CIDRs and hostnames', () => {
    const allow = new AddressPolicy('127.0.0.1, 10.1.0.0/16, images.internal');
    expect(allow.check('127.0.0.1').allowed).toBe(true);
    expect(allow.check('127.0.0.2').allowed).toBe(false);
    expect(allow.check('10.1.200.3').allowed).toBe(true);
    expect(allow.check('10.2.0.1').allowed).toBe(false);
    expect(allow.check('::1').allowed).toBe(false);
    expect(allow.hostAllowed('images.internal')).toBe(true);
    expect(allow.hostAllowed('other.internal')).toBe(false);
  });

  it('treats garbage as refused', () => {
    expect(policy.check('not-an-ip').allowed).toBe(false);
  });
});
