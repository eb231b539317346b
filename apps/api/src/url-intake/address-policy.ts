import ipaddr from 'ipaddr.js';

export interface AddressVerdict {
  allowed: boolean;
  /** ipaddr.js's range name: unicast, private, loopback, linkLocal, carrierGradeNat, uniqueLocal, multicast, ... */
  range: string;
}

/**
 * Which addresses an image URL may lead to. Only globally routable unicast addresses are public; every
 * special range (loopback, private, link-local incl. 169.254.169.254 metadata, CGNAT, multicast, reserved,
 * unique-local, IPv6 transition forms) is refused. IPv4-mapped IPv6 is judged as the IPv4 it carries.
 * FETCH_ALLOW_HOSTS entries (addresses or CIDRs) are allowed whatever their range.
 */
export class AddressPolicy {
  private readonly cidrs: [ipaddr.IPv4 | ipaddr.IPv6, number][] = [];
  private readonly hostnames = new Set<string>();

  constructor(allowList: string) {
    for (const raw of allowList.split(',').map((entry) => entry.trim().toLowerCase()).filter(Boolean)) {
      const entry = raw.replace(/^\[|\]$/g, '');
      if (entry.includes('/')) this.cidrs.push(ipaddr.parseCIDR(entry));
      else if (ipaddr.isValid(entry)) {
        const address = ipaddr.parse(entry);
        this.cidrs.push([address, address.kind() === 'ipv4' ? 32 : 128]);
      } else this.hostnames.add(entry);
    }
  }

  /** Hostnames named in FETCH_ALLOW_HOSTS (their addresses are then allowed too). */
  hostAllowed(hostname: string): boolean {
    return this.hostnames.has(hostname.toLowerCase().replace(/^\[|\]$/g, ''));
  }

  check(address: string): AddressVerdict {
    if (!ipaddr.isValid(address)) return { allowed: false, range: 'invalid' };
    let parsed = ipaddr.parse(address);
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address();
    const range = parsed.range();
    for (const [network, bits] of this.cidrs) {
      if (network.kind() === parsed.kind() && parsed.match(network as never, bits)) return { allowed: true, range: `${range} (FETCH_ALLOW_HOSTS)` };
    }
    return { allowed: range === 'unicast', range };
  }
}
