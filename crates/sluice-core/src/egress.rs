//! Where sinks may connect: the egress policy of HTTP and object-store sinks, applied by the
//! worker to every address a destination resolves to (so a name that resolves, or is made to
//! resolve, to a denied address is refused too).
//!
//! The decision for one address, in order:
//! 1. cloud metadata, link-local and unspecified addresses are always denied;
//! 2. an address in the platform's allow list is permitted;
//! 3. an address in the platform's deny list is denied;
//! 4. loopback addresses are denied unless the platform allows loopback (`sluice dev` does:
//!    everything runs on one machine);
//! 5. anything else is permitted.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP block in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The block's first address (host bits cleared).
    network: IpAddr,
    /// Prefix length.
    prefix: u8,
}

/// A CIDR that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP block in CIDR notation (e.g. 10.0.0.0/8 or fd00::/8)")]
pub struct CidrError(pub String);

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError(text.to_string());
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr {
            network: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_canonical(),
        v4 => v4,
    }
}

/// Cloud metadata endpoints: always denied.
pub const METADATA: [&str; 3] = [
    "169.254.169.254/32",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
];
/// Unspecified addresses: always denied.
pub const UNSPECIFIED: [&str; 2] = ["0.0.0.0/8", "::/128"];
/// Link-local addresses: always denied.
pub const LINK_LOCAL: [&str; 2] = ["169.254.0.0/16", "fe80::/10"];
/// Loopback addresses: denied unless loopback is allowed.
pub const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// The egress settings of the platform, as the operator renders them into each route's
/// configuration (field `sinkPolicy` of `route.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkPolicy {
    /// Blocks sinks may reach even when in `denyCidrs` or loopback (never metadata,
    /// link-local or unspecified addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_cidrs: Vec<String>,
    /// Blocks sinks may not reach (e.g. the cluster's pod and service networks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_cidrs: Vec<String>,
    /// Whether sinks may reach loopback addresses (local development only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_loopback: bool,
    /// Whether object-store sinks without credentials may use the ambient credentials of the
    /// node or pod (instance metadata, environment, web identity).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_ambient_credentials: bool,
}

/// A parsed policy, ready to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    allow_loopback: bool,
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination address {ip} is denied: {why}")]
pub struct Denied {
    /// The refused address.
    pub ip: IpAddr,
    /// Which rule refused it.
    pub why: &'static str,
}

fn blocks(list: &[&str]) -> Vec<Cidr> {
    list.iter()
        .map(|c| Cidr::parse(c).expect("built-in blocks parse"))
        .collect()
}

fn any(list: &[&str], ip: IpAddr) -> bool {
    blocks(list).iter().any(|c| c.contains(ip))
}

impl Egress {
    /// Parses a policy; the error names the bad block.
    pub fn new(policy: &SinkPolicy) -> Result<Egress, CidrError> {
        let parse = |list: &[String]| -> Result<Vec<Cidr>, CidrError> {
            list.iter().map(|c| Cidr::parse(c)).collect()
        };
        Ok(Egress {
            allow: parse(&policy.allow_cidrs)?,
            deny: parse(&policy.deny_cidrs)?,
            allow_loopback: policy.allow_loopback,
        })
    }

    /// Whether a sink may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Denied> {
        let ip = canonical(ip);
        let denied = |why| Err(Denied { ip, why });
        if let Some(why) = always_denied(ip) {
            return denied(why);
        }
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        if self.deny.iter().any(|c| c.contains(ip)) {
            return denied("in the platform's deny list");
        }
        if !self.allow_loopback && any(&LOOPBACK, ip) {
            return denied("a loopback address");
        }
        Ok(())
    }
}

/// Whether `ip` is refused whatever the platform allows: metadata, unspecified and link-local
/// addresses. The API and the operator refuse sink URLs naming such an address literally;
/// the rest of the policy depends on the platform and is the worker's to apply.
pub fn always_denied(ip: IpAddr) -> Option<&'static str> {
    let ip = canonical(ip);
    if any(&METADATA, ip) {
        Some("a cloud metadata address")
    } else if any(&UNSPECIFIED, ip) {
        Some("an unspecified address")
    } else if any(&LINK_LOCAL, ip) {
        Some("a link-local address")
    } else {
        None
    }
}

impl Cidr {
    /// Whether every address of `other` is in this block.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.prefix <= other.prefix && self.contains(other.network)
    }
}

/// The blocks a NetworkPolicy rule allowing `cidr` must except so that no tenant reaches
/// link-local or metadata addresses through it: each of those blocks that lies strictly inside
/// `cidr` (a NetworkPolicy `except` must be inside its `cidr`), without repeating one already
/// covered. A `cidr` that itself lies inside such a block is refused by validation
/// ([`inside_always_denied`]).
pub fn network_policy_excepts(cidr: &Cidr) -> Vec<Cidr> {
    let mut out: Vec<Cidr> = vec![];
    for block in blocks(&LINK_LOCAL).into_iter().chain(blocks(&METADATA)) {
        if cidr.covers(&block)
            && cidr.prefix < block.prefix
            && !out.iter().any(|o| o.covers(&block))
        {
            out.push(block);
        }
    }
    out
}

/// When `cidr` lies entirely inside a link-local or metadata block, which one.
pub fn inside_always_denied(cidr: &Cidr) -> Option<Cidr> {
    blocks(&LINK_LOCAL)
        .into_iter()
        .chain(blocks(&METADATA))
        .find(|b| b.covers(cidr))
}

/// When `url` names its host by an IP address that no platform may allow (see
/// [`always_denied`]), why. Numeric forms such as `http://2852039166/` or `http://0xa9fea9fe/`
/// are read as the addresses they are, as HTTP clients read them.
pub fn literal_url_denied(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let ip = match parsed.host()? {
        url::Host::Ipv4(a) => IpAddr::V4(a),
        url::Host::Ipv6(a) => IpAddr::V6(a),
        url::Host::Domain(_) => return None,
    };
    always_denied(ip).map(|why| format!("must not name {why} ({ip})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(
            c.contains(ip("::ffff:10.0.0.1")),
            "mapped IPv6 counts as IPv4"
        );
        assert!(!c.contains(ip("fd00::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("fe80::/10").unwrap().contains(ip("febf::1")));
        assert!(
            Cidr::parse("192.168.1.1")
                .unwrap()
                .contains(ip("192.168.1.1"))
        );
        for bad in ["10.0.0.0/33", "::/129", "x/8", "10.0.0/8", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_policy_denies_metadata_link_local_loopback_and_unspecified() {
        let e = Egress::new(&SinkPolicy::default()).unwrap();
        for denied in [
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
        ] {
            assert!(e.check(ip(denied)).is_err(), "{denied}");
        }
        for permitted in [
            "93.184.216.34",
            "10.0.0.1",
            "2001:db8::1",
            "100.100.100.201",
        ] {
            assert!(e.check(ip(permitted)).is_ok(), "{permitted}");
        }
    }

    #[test]
    fn the_platform_tunes_the_policy_but_never_opens_metadata_or_link_local() {
        let e = Egress::new(&SinkPolicy {
            allow_cidrs: vec!["10.5.0.0/16".into(), "169.254.0.0/16".into()],
            deny_cidrs: vec!["10.0.0.0/8".into()],
            allow_loopback: true,
            allow_ambient_credentials: false,
        })
        .unwrap();
        assert!(e.check(ip("10.5.1.1")).is_ok(), "allow beats deny");
        assert!(e.check(ip("10.6.1.1")).is_err());
        assert!(e.check(ip("127.0.0.1")).is_ok());
        assert!(
            e.check(ip("169.254.1.1")).is_err(),
            "link-local stays denied"
        );
        assert!(e.check(ip("169.254.169.254")).is_err());
        assert!(e.check(ip("0.0.0.0")).is_err());
        let bad = SinkPolicy {
            deny_cidrs: vec!["ten/8".into()],
            ..SinkPolicy::default()
        };
        assert_eq!(Egress::new(&bad).unwrap_err(), CidrError("ten/8".into()));
    }

    #[test]
    fn always_denied_is_what_no_platform_can_allow() {
        assert!(always_denied(ip("169.254.169.254")).is_some());
        assert!(always_denied(ip("fe80::1")).is_some());
        assert!(always_denied(ip("0.0.0.0")).is_some());
        assert!(always_denied(ip("127.0.0.1")).is_none());
        assert!(always_denied(ip("10.0.0.1")).is_none());
    }

    #[test]
    fn network_policies_always_except_link_local_and_metadata() {
        let ex = |c: &str| -> Vec<String> {
            network_policy_excepts(&Cidr::parse(c).unwrap())
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(ex("0.0.0.0/0"), ["169.254.0.0/16", "100.100.100.200/32"]);
        assert_eq!(ex("::/0"), ["fe80::/10", "fd00:ec2::254/128"]);
        assert_eq!(ex("169.0.0.0/8"), ["169.254.0.0/16"]);
        assert!(ex("10.0.0.0/8").is_empty());
        // Validation refuses this rule (inside link-local); it would keep metadata out anyway.
        assert_eq!(ex("169.254.0.0/16"), ["169.254.169.254/32"]);
        assert!(inside_always_denied(&Cidr::parse("169.254.0.0/16").unwrap()).is_some());
        assert!(inside_always_denied(&Cidr::parse("169.254.169.254/32").unwrap()).is_some());
        assert!(inside_always_denied(&Cidr::parse("100.100.100.200/32").unwrap()).is_some());
        assert!(inside_always_denied(&Cidr::parse("0.0.0.0/0").unwrap()).is_none());
    }

    #[test]
    fn literal_urls_in_always_denied_blocks_are_refused() {
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://169.254.1.1:8080/x",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0:80/",
        ] {
            assert!(literal_url_denied(bad).is_some(), "{bad}");
        }
        for ok in [
            "http://127.0.0.1:9000/hook",
            "https://hooks.example.com/x",
            "http://10.0.0.1/",
            "not a url",
        ] {
            assert_eq!(literal_url_denied(ok), None, "{ok}");
        }
    }
}
