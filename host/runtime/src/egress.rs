//! Which addresses plugins' outbound HTTP may connect to: the operator's
//! word, never a plugin's.
//!
//! A manifest's `allowed-hosts` and the host's grants name hosts; this is
//! the check under them, on the addresses a name resolves to. Internal
//! addresses (loopback, link-local, private, unspecified, multicast, the
//! server's own listen address) are refused unless the operator allowed
//! them. The check runs on every address a connection may use: the host
//! resolves the name itself, and the HTTP client's resolver checks its own
//! answer again, so a name that changes its answer between the two (DNS
//! rebinding) is refused too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

pub use ipnet::IpNet;

/// The operator's rules for plugins' outbound connections.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    /// Internal networks plugins may reach all the same (`127.0.0.1/32` for
    /// a registry on this machine).
    pub allowed: Vec<IpNet>,
    /// The server's own listen addresses: always refused, inside an allowed
    /// network too; a name that resolves to one of their addresses is
    /// refused on any port.
    pub own: Vec<SocketAddr>,
    /// Every address goes: the flow engine, whose plugins run in the
    /// user's own deployment and reach the user's own network.
    pub any: bool,
}

impl Egress {
    /// Loopback allowed beside the internet: a developer's machine, or tests
    /// whose servers listen there.
    pub fn loopback() -> Egress {
        Egress {
            allowed: vec![
                IpNet::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).expect("a valid prefix"),
                IpNet::from(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
            ],
            ..Egress::default()
        }
    }

    /// Any address: see [`Egress::any`].
    pub fn any() -> Egress {
        Egress {
            any: true,
            ..Egress::default()
        }
    }

    /// Whether a connection to `address` is allowed.
    pub fn permits(&self, address: SocketAddr) -> bool {
        let ip = canonical(address.ip());
        self.permits_ip(ip)
            && !self
                .own
                .iter()
                .any(|own| own.port() == address.port() && self.is_own(*own, ip))
    }

    /// For a host written as an address (`127.0.0.1`, `[::1]`), whether a
    /// connection to it on `port` is allowed; `None` for a name, which the
    /// checked resolver judges by what it resolves to.
    pub fn permits_literal(&self, host: &str, port: u16) -> Option<bool> {
        Some(self.permits(SocketAddr::new(literal(host)?, port)))
    }

    /// Whether `ip` is allowed on some port.
    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.any || !internal(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// Whether a name may resolve to `ip`: as [`Egress::permits_ip`], and
    /// never to an address the server listens on (the port is not known
    /// there).
    pub fn permits_resolved(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.permits_ip(ip) && !self.own.iter().any(|own| self.is_own(*own, ip))
    }

    /// Whether `ip` is the address of the listener `own` (an unspecified
    /// listen address listens on every internal address and on every
    /// address of the machine, public ones included).
    fn is_own(&self, own: SocketAddr, ip: IpAddr) -> bool {
        canonical(own.ip()) == ip || (own.ip().is_unspecified() && (internal(ip) || is_local(ip)))
    }
}

/// Whether `ip` is an address of this machine: a socket can be bound to it.
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The address a URL's host is written as (`127.0.0.1`, `[::1]`), if it is
/// not a name.
pub fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, link-local, private, shared, unspecified, broadcast or
/// multicast: an address inside a network rather than on the internet.
fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 0
                // 240.0.0.0/4, reserved.
                || v4.octets()[0] >= 240
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64)
                // 192.0.0.0/24, protocol assignments.
                || v4.octets()[..3] == [192, 0, 0]
                // 198.18.0.0/15, network benchmarks.
                || (v4.octets()[0] == 198 && v4.octets()[1] & 0xfe == 18)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local, fec0::/10
                // site-local.
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80
                || first & 0xffc0 == 0xfec0
                // 64:ff9b::/96 (NAT64) and 2002::/16 (6to4) carry an IPv4
                // address inside: judged by it.
                || embedded_v4(v6).is_some_and(|v4| internal(IpAddr::V4(v4)))
                // ::a.b.c.d, the deprecated IPv4-compatible form.
                || v6.to_ipv4().is_some_and(|v4| v4 != Ipv4Addr::new(0, 0, 0, 1) && internal(IpAddr::V4(v4)))
        }
    }
}

/// The IPv4 address a NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address
/// stands for.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let word =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(word(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(word(s[1], s[2]))
    } else {
        None
    }
}

/// A name the HTTP client's resolver refused: every address is internal.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` resolves only to internal addresses, which the operator did not allow")]
pub struct Refused(pub String);

/// An HTTP client's resolver: the system's, less what [`Egress`] refuses.
pub struct CheckedResolver(pub Arc<Egress>);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.0.clone();
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> =
                found.filter(|a| egress.permits_resolved(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused(name.as_str().to_string())) as _);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let none = Egress::default();
        for refused in [
            "127.0.0.1:80",
            "127.9.9.9:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "0.0.0.0:80",
            "100.64.0.1:80",
            "[::1]:80",
            "[::]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:169.254.169.254]:80",
            "[64:ff9b::7f00:1]:80",
            "[2002:a9fe:a9fe::1]:80",
            "[fec0::1]:80",
            "240.0.0.1:80",
            "198.18.0.1:80",
            "192.0.0.8:80",
        ] {
            assert!(!none.permits(at(refused)), "{refused}");
        }
        for public in [
            "93.184.216.34:443",
            "[2606:4700::1111]:443",
            "100.128.0.1:80",
            "[64:ff9b::5db8:d822]:443",
            "198.20.0.1:80",
        ] {
            assert!(none.permits(at(public)), "{public}");
        }
        let local = Egress {
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
            ..Egress::default()
        };
        assert!(local.permits(at("127.0.0.1:5000")));
        assert!(local.permits(at("[::ffff:127.0.0.1]:5000")));
        assert!(!local.permits(at("169.254.169.254:80")));
        assert!(Egress::any().permits(at("169.254.169.254:80")));
    }

    #[test]
    fn the_servers_own_address_is_always_refused() {
        let mut egress = Egress {
            allowed: vec![
                "127.0.0.0/8".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
            own: vec![at("127.0.0.1:7420")],
            any: false,
        };
        assert!(!egress.permits(at("127.0.0.1:7420")));
        assert!(egress.permits(at("127.0.0.1:7421")));
        // A name may not resolve to it on any port: the resolver sees none.
        assert!(!egress.permits_resolved("127.0.0.1".parse().unwrap()));
        assert!(egress.permits_resolved("127.0.0.2".parse().unwrap()));
        egress.own = vec![at("0.0.0.0:7420")];
        assert!(!egress.permits(at("127.0.0.2:7420")));
        assert!(egress.permits(at("127.0.0.2:7421")));
        // Listening everywhere, the server is also at the machine's own
        // addresses (the one its default route leaves from), even where the
        // operator allowed every network.
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        probe.connect("192.0.2.1:9").unwrap();
        let machine = probe.local_addr().unwrap().ip();
        egress.allowed = vec!["0.0.0.0/0".parse().unwrap()];
        assert!(!egress.permits(SocketAddr::new(machine, 7420)), "{machine}");
        assert!(egress.permits(SocketAddr::new(machine, 7421)));
        assert!(egress.permits(at("192.0.2.1:7420")), "not this machine");
        assert!(is_local(machine) && !is_local("192.0.2.1".parse().unwrap()));
    }
}
