//! The API's shapes for network policies and their denials, turned into the runtime's
//! [`NetworkPolicy`] with every target parsed (and named in errors).

use airlock_runtime::egress::policy::{Action, Mode, NetworkPolicy, PolicyError, PolicyPatch, Rule, Target};
use airlock_runtime::egress::record::Denial;
use airlock_runtime::RuntimeError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::rfc3339;
use crate::error::ApiError;

/// A network policy.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyBody {
    /// `none` (loopback only; the default), `allowlist` (out through the egress proxy, by the
    /// rules) or `host` (the host's network; only when the server allows it, only at creation).
    #[serde(default)]
    pub mode: ModeName,
    /// What happens to a connection no rule matches.
    #[serde(default)]
    pub default_action: ActionName,
    /// Rules, the first match deciding.
    #[serde(default)]
    pub rules: Vec<NetworkRule>,
}

/// A network mode.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    /// Loopback only.
    #[default]
    None,
    /// Out through the egress proxy, by the rules.
    Allowlist,
    /// The host's network.
    Host,
}

/// What a rule (or the default) does.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    /// Let the connection through.
    Allow,
    /// Refuse it, and record the refusal.
    #[default]
    Deny,
}

/// One rule of a policy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkRule {
    /// What it does.
    pub action: ActionName,
    /// An exact domain (`pypi.org`), a wildcard (`*.pythonhosted.org`: subdomains, not the
    /// apex), an IP (`203.0.113.7`) or a CIDR network (`10.0.0.0/8`, `2001:db8::/32`).
    pub target: String,
}

/// A patch of a policy: `rules` go ahead of the existing ones (replacing rules with the same
/// target; the first of duplicates wins), `remove` deletes rules by target, `mode` and
/// `default_action` replace.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkPatchBody {
    /// New mode.
    pub mode: Option<ModeName>,
    /// New default action.
    pub default_action: Option<ActionName>,
    /// Rules to put first.
    #[serde(default)]
    pub rules: Vec<NetworkRule>,
    /// Targets whose rules are removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl From<ModeName> for Mode {
    fn from(m: ModeName) -> Mode {
        match m {
            ModeName::None => Mode::None,
            ModeName::Allowlist => Mode::Allowlist,
            ModeName::Host => Mode::Host,
        }
    }
}

impl From<ActionName> for Action {
    fn from(a: ActionName) -> Action {
        match a {
            ActionName::Allow => Action::Allow,
            ActionName::Deny => Action::Deny,
        }
    }
}

fn rules(field: &str, rules: Vec<NetworkRule>) -> Result<Vec<Rule>, ApiError> {
    rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| match Target::parse(&rule.target) {
            Ok(target) => Ok(Rule { action: rule.action.into(), target }),
            Err(e) => Err(invalid(format!("{field}.rules[{i}].target"), e.reason)),
        })
        .collect()
}

/// A policy error naming the body's field.
fn invalid(field: String, reason: String) -> ApiError {
    let field = field.trim_start_matches('.').to_owned();
    ApiError::from(RuntimeError::NetworkPolicy(PolicyError { field, reason }))
}

impl NetworkPolicyBody {
    /// The runtime's policy; `field` names the body's field in errors (`network`, or empty for
    /// a body that is the policy).
    pub fn into_policy(self, field: &str) -> Result<NetworkPolicy, ApiError> {
        Ok(NetworkPolicy {
            mode: self.mode.into(),
            default_action: self.default_action.into(),
            rules: rules(field, self.rules)?,
        })
    }
}

impl NetworkPatchBody {
    /// The runtime's patch.
    pub fn into_patch(self) -> Result<PolicyPatch, ApiError> {
        let remove = self
            .remove
            .iter()
            .enumerate()
            .map(|(i, t)| Target::parse(t).map_err(|e| invalid(format!("remove[{i}]"), e.reason)))
            .collect::<Result<_, _>>()?;
        Ok(PolicyPatch {
            mode: self.mode.map(Mode::from),
            default_action: self.default_action.map(Action::from),
            rules: rules("", self.rules)?,
            remove,
        })
    }
}

impl From<NetworkPolicy> for NetworkPolicyBody {
    fn from(p: NetworkPolicy) -> NetworkPolicyBody {
        let action = |a: Action| match a {
            Action::Allow => ActionName::Allow,
            Action::Deny => ActionName::Deny,
        };
        NetworkPolicyBody {
            mode: match p.mode {
                Mode::None => ModeName::None,
                Mode::Allowlist => ModeName::Allowlist,
                Mode::Host => ModeName::Host,
            },
            default_action: action(p.default_action),
            rules: p
                .rules
                .into_iter()
                .map(|r| NetworkRule { action: action(r.action), target: r.target.to_string() })
                .collect(),
        }
    }
}

/// A connection the sandbox's proxy refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct DenialView {
    /// Position in the sandbox's denials, from 1.
    pub seq: u64,
    /// When (RFC 3339).
    pub time: String,
    /// What was asked for, `host:port`.
    pub target: String,
    /// The address decided on, when the name resolved.
    pub address: Option<String>,
    /// The rule that refused it.
    pub rule: String,
}

impl From<Denial> for DenialView {
    fn from(d: Denial) -> DenialView {
        DenialView {
            seq: d.seq,
            time: rfc3339(d.time_ms),
            target: d.target,
            address: d.address,
            rule: d.rule,
        }
    }
}

/// A page of denials.
#[derive(Debug, Serialize, ToSchema)]
pub struct DenialList {
    /// Denials after `after`, oldest first.
    pub denials: Vec<DenialView>,
    /// Denials since the sandbox started, including those no longer kept.
    pub total: u64,
}

/// A request for a signed ingress link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The port inside the sandbox the link reaches.
    pub port: u16,
    /// Seconds the link works for: 1 to 604800 (a week); an hour when left out.
    #[serde(default = "default_link_seconds")]
    pub expires_in: u64,
}

fn default_link_seconds() -> u64 {
    3600
}

/// A signed ingress link: whoever holds it reaches the port until it expires, with no API key.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    /// The full URL, from the `Host` (and `X-Forwarded-Proto`) of the request that made it.
    pub url: String,
    /// The URL's path on this server: `/v1/links/{token}/`.
    pub path: String,
    /// The signed token, which names the sandbox, the port and the expiry.
    pub token: String,
    /// The port it reaches.
    pub port: u16,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

impl LinkView {
    /// The view of `link`, whose token is `token`, as reached through `origin`
    /// (`scheme://host`).
    pub fn new(origin: &str, token: String, link: &airlock_runtime::IngressLink) -> LinkView {
        let path = format!("/v1/links/{token}/");
        LinkView {
            url: format!("{origin}{path}"),
            path,
            token,
            port: link.port,
            expires_at: rfc3339(link.expires_ms),
        }
    }
}
