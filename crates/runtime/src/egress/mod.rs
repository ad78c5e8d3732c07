//! Network egress: policies, decisions, and the host-side proxy that enforces them.
//!
//! A sandbox with a policy keeps its own network namespace with only `lo`. A socket listening on
//! `127.0.0.1:PROXY_PORT` inside that namespace is made by the sandbox (its agent, or the
//! engine's init for a one-shot run) and handed to this side, which accepts on it: the sandbox
//! reaches the outside only through this proxy, with no route, no capability and no relay.

pub mod decide;
pub mod policy;
mod proxy;
pub mod record;
pub mod resolve;
mod socks;

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use decide::Protected;
use policy::NetworkPolicy;
use record::{Denial, DenialLog};
use resolve::Resolver;

/// Connections one sandbox may have open through its proxy at once (a tunnel counts twice while
/// its request is being answered); each holds two of the server's descriptors.
pub const MAX_CONNECTIONS: usize = 256;

/// The port of the proxy inside every sandbox (squid's, which tools expect of a proxy).
pub const PROXY_PORT: u16 = 3128;

/// The variables that point tools in the sandbox at the proxy: curl, pip, npm, requests and
/// most others read one of these; loopback stays direct.
pub fn proxy_env() -> Vec<(String, String)> {
    let url = format!("http://127.0.0.1:{PROXY_PORT}");
    let mut env = Vec::new();
    for name in ["http_proxy", "https_proxy", "all_proxy"] {
        env.push((name.to_owned(), url.clone()));
        env.push((name.to_uppercase(), url.clone()));
    }
    for name in ["no_proxy", "NO_PROXY"] {
        env.push((name.to_owned(), "localhost,127.0.0.1,::1".to_owned()));
    }
    env
}

/// What every proxy of one server (or one run) shares.
#[derive(Debug, Default)]
pub struct EgressSettings {
    /// Pinned names, then the host's resolver.
    pub resolver: Resolver,
    /// Addresses no name may lead to (the server's own sockets among them).
    pub protected: Protected,
    /// Denials of every sandbox, for metrics.
    pub denied_total: AtomicU64,
}

/// One sandbox's egress: its policy, its denials, and the proxy serving its listener.
pub struct Egress {
    label: String,
    settings: Arc<EgressSettings>,
    policy: RwLock<Arc<NetworkPolicy>>,
    denials: Mutex<DenialLog>,
    serving: Mutex<Option<AbortHandle>>,
    connections: Arc<Semaphore>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("label", &self.label)
            .field("policy", &self.policy_now())
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// Egress for the sandbox (or run) named `label` in logs, under `policy`.
    pub fn new(
        label: impl Into<String>,
        policy: NetworkPolicy,
        settings: Arc<EgressSettings>,
    ) -> Arc<Egress> {
        Arc::new(Egress {
            label: label.into(),
            settings,
            policy: RwLock::new(Arc::new(policy)),
            denials: Mutex::default(),
            serving: Mutex::default(),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> NetworkPolicy {
        self.policy_now().as_ref().clone()
    }

    fn policy_now(&self) -> Arc<NetworkPolicy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replace the policy; connections opened from now on are decided by it.
    pub fn set_policy(&self, policy: NetworkPolicy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// Denials after `seq` (at most `limit`) and the count of all denials so far.
    pub fn denials(&self, seq: u64, limit: usize) -> (Vec<Denial>, u64) {
        let log = self.denials.lock().unwrap_or_else(|e| e.into_inner());
        (log.since(seq, limit), log.total())
    }

    /// Serve the proxy on `listener` (the socket the sandbox made) until [`Egress::close`] or
    /// a later `serve`. Needs a tokio runtime.
    pub fn serve(self: &Arc<Self>, listener: OwnedFd) -> std::io::Result<()> {
        let listener = std::net::TcpListener::from(listener);
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let task = tokio::spawn(proxy::accept_loop(Arc::clone(self), listener));
        if let Some(old) = self.serving.lock().unwrap_or_else(|e| e.into_inner()).replace(task.abort_handle())
        {
            old.abort();
        }
        Ok(())
    }

    /// Stop serving: the listener and the connections being served are closed. The listener
    /// holds the sandbox's network namespace, so this is part of ending a sandbox.
    pub fn close(&self) {
        if let Some(task) = self.serving.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }

    /// Record a denial, log it, and make the proxy's answer to it.
    fn refuse(
        &self,
        target: &str,
        address: Option<std::net::IpAddr>,
        rule: &str,
    ) -> hyper::Response<crate::relay::RelayBody> {
        let time_ms = crate::model::now_ms();
        let denial = self.denials.lock().unwrap_or_else(|e| e.into_inner()).push(
            time_ms,
            target.to_owned(),
            address.map(|a| a.to_string()),
            rule.to_owned(),
        );
        self.settings.denied_total.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(sandbox = %self.label, target, address = ?denial.address, rule, "egress denied");
        let mut answer = crate::relay::text(
            hyper::StatusCode::FORBIDDEN,
            format!("airlock: egress to {target} denied by the sandbox's network policy ({rule})\n"),
        );
        if let Ok(value) = rule.parse() {
            answer.headers_mut().insert("x-airlock-denied-by", value);
        }
        answer
    }
}
