//! `airlock run --allow`: the run keeps a network namespace with only `lo`, and this process
//! serves its egress proxy on the listener the sandbox's init made there, deciding every
//! connection by the allowlist.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use airlock_jail::{OutputSink, Stream};
use airlock_runtime::egress::policy::{Action, NetworkPolicy, Rule, Target};
use airlock_runtime::egress::resolve::Resolver;
use airlock_runtime::egress::{Egress, EgressSettings};

use crate::args::RunArgs;
use crate::error::RunError;

/// The egress of a run with `--allow`, or `None` without.
pub fn from_args(args: &RunArgs) -> Result<Option<Arc<Egress>>, RunError> {
    if args.allow.is_empty() {
        if !args.add_host.is_empty() {
            return Err(RunError::invalid("E1003", "--add-host", "--add-host only applies with --allow"));
        }
        return Ok(None);
    }
    if args.network {
        return Err(RunError::invalid(
            "E1003",
            "--allow",
            "--allow and --network exclude each other: --network shares the host's network unfiltered",
        ));
    }
    let mut rules = Vec::with_capacity(args.allow.len());
    for target in &args.allow {
        let target =
            Target::parse(target).map_err(|e| RunError::invalid("E1003", "--allow", e.to_string()))?;
        rules.push(Rule { action: Action::Allow, target });
    }
    let policy = NetworkPolicy::allowlist(Action::Deny, rules);
    policy.validate().map_err(|e| RunError::invalid("E1003", "--allow", e.to_string()))?;
    let settings =
        EgressSettings { resolver: Resolver { pinned: pinned_hosts(&args.add_host)? }, ..Default::default() };
    Ok(Some(Egress::new("run", policy, Arc::new(settings))))
}

/// `--add-host NAME:IP` values, several IPs for a name allowed.
fn pinned_hosts(values: &[String]) -> Result<BTreeMap<String, Vec<IpAddr>>, RunError> {
    let mut pinned: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for value in values {
        let bad = |why: &str| {
            RunError::invalid("E1003", "--add-host", format!("{value:?}: {why}; expected NAME:IP"))
        };
        let (name, ip) = value.split_once(':').ok_or_else(|| bad("no colon"))?;
        let name = match Target::parse(name) {
            Ok(Target::Domain(name)) => name,
            _ => return Err(bad("not a host name")),
        };
        let ip = ip
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .map_err(|_| bad("not an IP address"))?;
        pinned.entry(name).or_default().push(ip);
    }
    Ok(pinned)
}

/// Passes output on, and serves the proxy once the sandbox hands over its listener.
pub struct EgressSink<'a> {
    /// Where output goes.
    pub inner: &'a mut dyn OutputSink,
    /// The run's egress, when it has one.
    pub egress: Option<Arc<Egress>>,
}

impl OutputSink for EgressSink<'_> {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        self.inner.output(stream, data);
    }

    fn listener(&mut self, listener: OwnedFd) {
        let Some(egress) = self.egress.clone() else { return };
        // The supervisor is single-threaded only until the sandbox exists; the proxy gets a
        // thread of its own from here, which lives as long as this process.
        let started = std::thread::Builder::new().name("egress".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return tracing::error!("cannot start the egress proxy: {e}"),
            };
            runtime.block_on(async move {
                match egress.serve(listener) {
                    Ok(()) => std::future::pending::<()>().await,
                    Err(e) => tracing::error!("cannot serve the egress proxy: {e}"),
                }
            });
        });
        if let Err(e) = started {
            tracing::error!("cannot start the egress proxy: {e}");
        }
    }
}
