//! Name resolution for the egress proxy: names the operator pinned first, then the host's
//! resolver. The proxy connects to exactly the addresses it decided on, so a name that
//! resolves differently a moment later (DNS rebinding) changes nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::decide::Source;

/// How long one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves names for the proxy.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// Names pinned to addresses by the operator (lowercase, no trailing dot).
    pub pinned: BTreeMap<String, Vec<IpAddr>>,
}

impl Resolver {
    /// The addresses of `name` and where they came from, or why there are none.
    pub async fn resolve(&self, name: &str, port: u16) -> Result<(Vec<IpAddr>, Source), String> {
        if let Some(addrs) = self.pinned.get(name) {
            return Ok((addrs.clone(), Source::Pinned));
        }
        let lookup = tokio::net::lookup_host((name, port));
        match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(addrs)) => {
                let mut ips: Vec<IpAddr> = Vec::new();
                for addr in addrs {
                    if !ips.contains(&addr.ip()) {
                        ips.push(addr.ip());
                    }
                }
                match ips.is_empty() {
                    true => Err(format!("{name} has no address")),
                    false => Ok((ips, Source::Dns)),
                }
            }
            Ok(Err(e)) => Err(format!("cannot resolve {name}: {e}")),
            Err(_) => Err(format!("resolving {name} took longer than {}s", LOOKUP_TIMEOUT.as_secs())),
        }
    }
}
