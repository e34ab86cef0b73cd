//! The platform's egress policy ([`sluice_core::egress`]) applied to the HTTP clients of
//! sinks: names are resolved by [`PolicyResolver`], which refuses a name when any address it
//! resolves to is denied (so a name that resolves, or is rebound, to a metadata or loopback
//! address fails); literal-address URLs, which no resolver sees, are checked by
//! [`check_url`]; redirects are never followed and no proxy from the environment is used
//! (a proxy would resolve and connect on the worker's behalf).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sluice_core::egress::{Denied, Egress};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Resolves names with the system resolver, then refuses denied addresses.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    egress: Arc<Egress>,
}

impl PolicyResolver {
    /// A resolver applying `egress`.
    pub fn new(egress: Arc<Egress>) -> Self {
        PolicyResolver { egress }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = self.egress.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                egress.check(a.ip())?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// An HTTP client builder for sinks: the policy's resolver, no redirects, no proxy.
pub fn client_builder(egress: Arc<Egress>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PolicyResolver::new(egress)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
}

/// Checks a URL whose host is a literal address (the resolver never sees those).
pub fn check_url(egress: &Egress, url: &str) -> Result<(), Denied> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
        _ => return Ok(()),
    };
    egress.check(ip)
}

/// The policy's refusal somewhere in the chain of `error`'s sources, if that is why it failed.
pub fn denial<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Denied> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(d) = e.downcast_ref::<Denied>() {
            return Some(d);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::egress::SinkPolicy;

    fn egress(allow_loopback: bool) -> Arc<Egress> {
        Arc::new(
            Egress::new(&SinkPolicy {
                allow_loopback,
                ..SinkPolicy::default()
            })
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn names_resolving_to_denied_addresses_are_refused() {
        let name: Name = "localhost".parse().unwrap();
        let err = match PolicyResolver::new(egress(false)).resolve(name).await {
            Ok(_) => panic!("localhost resolved"),
            Err(e) => e,
        };
        let d = denial(err.as_ref()).expect("a policy denial");
        assert!(d.ip.is_loopback(), "{d}");
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = PolicyResolver::new(egress(true))
            .resolve(name)
            .await
            .map_err(|e| e.to_string())
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
    }

    #[test]
    fn literal_addresses_are_checked() {
        let e = egress(false);
        assert!(check_url(&e, "http://127.0.0.1:8080/x").is_err());
        assert!(check_url(&e, "http://[::1]/").is_err());
        assert!(check_url(&e, "http://2852039166/").is_err());
        assert!(
            check_url(&e, "http://localhost/").is_ok(),
            "names go to the resolver"
        );
        assert!(check_url(&e, "http://93.184.216.34/").is_ok());
        assert!(check_url(&egress(true), "http://127.0.0.1/").is_ok());
    }
}
