import ipaddr from 'ipaddr.js';

/** RFC 4291 §2.4: the IPv6 global unicast block; IANA assigns every public IPv6 address from it. */
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3') as [ipaddr.IPv6, number];

/**
 * The WHATWG URL parser's spelling of an IPv6 address (what the fetcher sees in a URL's hostname), because
 * ipaddr.js reads the IPv4-compatible text form ::a.b.c.d as if it were IPv4-mapped ::ffff:a.b.c.d.
 */
function canonical(address: string): string {
  if (!address.includes(':')) return address;
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address;
  }
}

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
    let parsed = ipaddr.parse(canonical(address));
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address();
    const range = parsed.range();
    for (const [network, bits] of this.cidrs) {
      if (network.kind() === parsed.kind() && parsed.match(network as never, bits)) return { allowed: true, range: `${range} (FETCH_ALLOW_HOSTS)` };
    }
    // IPv6 is public only inside 2000::/3, the global unicast block: ipaddr.js calls anything it has no name
    // for "unicast", including IPv4-compatible ::a.b.c.d (deprecated; ::127.0.0.1 reaches loopback on some
    // stacks), the rest of ::/8 and other unassigned space.
    if (parsed.kind() === 'ipv6' && !parsed.match(GLOBAL_UNICAST_V6)) return { allowed: false, range: range === 'unicast' ? 'notGlobalUnicast' : range };
    return { allowed: range === 'unicast', range };
  }
}
