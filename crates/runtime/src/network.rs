//! A sandbox's network from the outside: its egress policy (read, replace, patch), the
//! connections its proxy refused, and ingress connections to servers listening inside it.

use airlock_agent::protocol::Op;
use tokio::net::TcpStream;

use crate::agent_conn::SocketRefused;
use crate::egress::policy::{Mode, NetworkPolicy, PolicyPatch};
use crate::egress::record::Denial;
use crate::error::RuntimeError;
use crate::runtime::Runtime;

/// The most denials one request returns.
pub const MAX_DENIALS_PER_PAGE: usize = 1000;

impl Runtime {
    /// The sandbox's network policy.
    pub fn network_policy(&self, owner: Option<&str>, id: &str) -> Result<NetworkPolicy, RuntimeError> {
        Ok(self.find(owner, id)?.record().network)
    }

    /// Replace the sandbox's network policy. New connections are decided by it at once;
    /// connections already open stay open. `host` cannot be entered or left: that network is
    /// chosen when the sandbox starts.
    pub fn set_network_policy(
        &self,
        owner: Option<&str>,
        id: &str,
        policy: NetworkPolicy,
    ) -> Result<NetworkPolicy, RuntimeError> {
        let sandbox = self.find(owner, id)?;
        self.check_network(&policy)?;
        let record = self.update_record(&sandbox, "change its network policy", |record| {
            let (was_host, is_host) = (record.network.mode == Mode::Host, policy.mode == Mode::Host);
            if was_host != is_host {
                let other = if was_host { policy.mode.as_str() } else { record.network.mode.as_str() };
                return Err(RuntimeError::NetworkModeFixed { id: id.to_owned(), other });
            }
            record.network = policy.clone();
            // Under the record's lock, so that two changes leave the proxy and the record agreeing.
            sandbox.egress.set_policy(policy);
            Ok(())
        })?;
        Ok(record.network)
    }

    /// Patch the sandbox's network policy (see [`NetworkPolicy::patched`]).
    pub fn patch_network_policy(
        &self,
        owner: Option<&str>,
        id: &str,
        patch: &PolicyPatch,
    ) -> Result<NetworkPolicy, RuntimeError> {
        let current = self.network_policy(owner, id)?;
        self.set_network_policy(owner, id, current.patched(patch)?)
    }

    /// Connections the sandbox's proxy refused after `after` (at most `limit`), and how many
    /// it refused in all.
    pub fn network_denials(
        &self,
        owner: Option<&str>,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Denial>, u64), RuntimeError> {
        Ok(self.find(owner, id)?.egress.denials(after, limit.min(MAX_DENIALS_PER_PAGE)))
    }

    /// A connection to `port` on the running sandbox's loopback, made by its agent inside the
    /// sandbox's network namespace.
    pub async fn connect_port(
        &self,
        owner: Option<&str>,
        id: &str,
        port: u16,
    ) -> Result<TcpStream, RuntimeError> {
        if port == 0 {
            return Err(RuntimeError::Invalid {
                field: "port".to_owned(),
                reason: "0 is not a port".to_owned(),
            });
        }
        let conn = self.running_agent(owner, id, "reach its ports")?;
        let fd = match conn.socket(Op::ConnectLoopback { port }).await {
            Ok(fd) => fd,
            Err(SocketRefused::Agent(message)) => {
                return Err(RuntimeError::PortUnreachable { id: id.to_owned(), message })
            }
            Err(SocketRefused::Hangup) => {
                return Err(RuntimeError::AgentUnavailable {
                    id: id.to_owned(),
                    reason: "it hung up".to_owned(),
                })
            }
        };
        let stream = std::net::TcpStream::from(fd);
        // What came from the agent must be a connected TCP socket; anything else is refused.
        stream.peer_addr().map_err(|e| RuntimeError::PortUnreachable {
            id: id.to_owned(),
            message: format!("the agent's connection to port {port} is not usable: {e}"),
        })?;
        stream.set_nonblocking(true).map_err(|e| RuntimeError::io("set up an ingress connection", e))?;
        TcpStream::from_std(stream).map_err(|e| RuntimeError::io("set up an ingress connection", e))
    }
}
