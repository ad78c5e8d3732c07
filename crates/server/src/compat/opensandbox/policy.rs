//! OpenSandbox's egress policy (`{defaultAction, egress: [{action, target}]}`) on Airlock's
//! network policy: the sidecar API (`/egress/{sandbox_id}/policy`) and the lifecycle API's
//! `/v1/sandboxes/{sandbox_id}/networkpolicy` both read and change the same runtime policy.
//!
//! A policy with rules or an `allow` default is Airlock's `allowlist` mode; `deny` with no rules
//! is `none` (loopback only), which is also what a sandbox gets when its creator names no
//! policy: Airlock does not start sandboxes with open egress.

use airlock_runtime::egress::policy::{Action, Mode, NetworkPolicy, PolicyPatch, Rule, Target};
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::access::SandboxAccess;
use super::error::OsError;
use crate::extract::parse;
use crate::state::AppState;

/// A policy as OpenSandbox writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsPolicy {
    /// `allow` or `deny`; `deny` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<String>,
    /// Rules, first match wins.
    #[serde(default)]
    pub egress: Vec<OsRule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsRule {
    /// `allow` or `deny`.
    pub action: String,
    /// A domain, `*.wildcard`, IP or CIDR.
    pub target: String,
}

/// What the policy routes answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    status: &'static str,
    mode: &'static str,
    enforcement_mode: &'static str,
    policy: OsPolicy,
}

fn action(field: &str, text: &str) -> Result<Action, OsError> {
    match text {
        "allow" => Ok(Action::Allow),
        "deny" => Ok(Action::Deny),
        other => Err(OsError::invalid(field, format!("{other:?} is not `allow` or `deny`"))),
    }
}

fn rules(field: &str, rules: &[OsRule]) -> Result<Vec<Rule>, OsError> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let target = Target::parse(&r.target)
                .map_err(|e| OsError::invalid(&format!("{field}[{i}].target"), e.reason))?;
            Ok(Rule { action: action(&format!("{field}[{i}].action"), &r.action)?, target })
        })
        .collect()
}

impl OsPolicy {
    /// The runtime policy this one means.
    pub fn to_policy(&self, field: &str) -> Result<NetworkPolicy, OsError> {
        let default_action = match &self.default_action {
            Some(text) => action(&format!("{field}.defaultAction"), text)?,
            None => Action::Deny,
        };
        let rules = rules(&format!("{field}.egress"), &self.egress)?;
        if default_action == Action::Deny && rules.is_empty() {
            return Ok(NetworkPolicy::none());
        }
        Ok(NetworkPolicy::allowlist(default_action, rules))
    }

    /// How OpenSandbox shows a runtime policy.
    pub fn from_policy(policy: &NetworkPolicy) -> OsPolicy {
        let default_action = match policy.mode {
            Mode::None => Action::Deny,
            Mode::Host => Action::Allow,
            Mode::Allowlist => policy.default_action,
        };
        let egress = match policy.mode {
            Mode::Allowlist => policy
                .rules
                .iter()
                .map(|r| OsRule { action: r.action.as_str().to_owned(), target: r.target.to_string() })
                .collect(),
            Mode::None | Mode::Host => Vec::new(),
        };
        OsPolicy { default_action: Some(default_action.as_str().to_owned()), egress }
    }
}

fn status(policy: &NetworkPolicy) -> Json<PolicyStatus> {
    let mode = match policy.mode {
        Mode::None => "deny_all",
        Mode::Host => "allow_all",
        Mode::Allowlist => match (policy.rules.is_empty(), policy.default_action) {
            (true, Action::Allow) => "allow_all",
            (true, Action::Deny) => "deny_all",
            (false, Action::Allow) => "deny_list",
            (false, Action::Deny) => "allow_list",
        },
    };
    let enforcement_mode = if policy.mode == Mode::Host { "none" } else { "proxy" };
    Json(PolicyStatus { status: "ok", mode, enforcement_mode, policy: OsPolicy::from_policy(policy) })
}

/// `GET /policy`: the policy in force.
pub async fn get(
    State(state): State<AppState>,
    access: SandboxAccess,
) -> Result<Json<PolicyStatus>, OsError> {
    Ok(status(&state.runtime.network_policy(access.owner(), &access.id)?))
}

/// `PUT /policy` (and `POST`): replace the policy.
pub async fn replace(
    State(state): State<AppState>,
    access: SandboxAccess,
    body: Bytes,
) -> Result<Json<PolicyStatus>, OsError> {
    let policy = parse::<OsPolicy>(&body)?.to_policy("policy")?;
    Ok(status(&state.runtime.set_network_policy(access.owner(), &access.id, policy)?))
}

/// `PATCH /policy`: an array of rules, placed before the current ones; a rule replaces the
/// current rule for its target, and within the patch the first rule for a target wins.
pub async fn patch(
    State(state): State<AppState>,
    access: SandboxAccess,
    body: Bytes,
) -> Result<Json<PolicyStatus>, OsError> {
    let incoming = parse::<Vec<OsRule>>(&body)?;
    if incoming.is_empty() {
        return Err(OsError::invalid("body", "name at least one rule"));
    }
    let current = state.runtime.network_policy(access.owner(), &access.id)?;
    // A sandbox without egress gains a deny-by-default allowlist when it is given rules.
    let patch = PolicyPatch {
        mode: (current.mode == Mode::None).then_some(Mode::Allowlist),
        default_action: (current.mode == Mode::None).then_some(Action::Deny),
        rules: rules("body", &incoming)?,
        remove: Vec::new(),
    };
    Ok(status(&state.runtime.patch_network_policy(access.owner(), &access.id, &patch)?))
}

/// `DELETE /policy`: an array of targets whose rules are removed; unknown ones are ignored.
pub async fn delete(
    State(state): State<AppState>,
    access: SandboxAccess,
    body: Bytes,
) -> Result<Json<PolicyStatus>, OsError> {
    let targets = parse::<Vec<String>>(&body)?;
    let remove = targets
        .iter()
        .enumerate()
        .map(|(i, t)| Target::parse(t).map_err(|e| OsError::invalid(&format!("body[{i}]"), e.reason)))
        .collect::<Result<Vec<_>, _>>()?;
    let patch = PolicyPatch { mode: None, default_action: None, rules: Vec::new(), remove };
    Ok(status(&state.runtime.patch_network_policy(access.owner(), &access.id, &patch)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: &str, target: &str) -> OsRule {
        OsRule { action: action.to_owned(), target: target.to_owned() }
    }

    #[test]
    fn deny_without_rules_is_no_egress_and_rules_make_an_allowlist() {
        assert_eq!(OsPolicy::default().to_policy("p").unwrap(), NetworkPolicy::none());
        let os = OsPolicy { default_action: Some("deny".into()), egress: vec![rule("allow", "pypi.org")] };
        let policy = os.to_policy("p").unwrap();
        assert_eq!(policy.mode, Mode::Allowlist);
        assert_eq!(OsPolicy::from_policy(&policy), os, "read back as written");
        let open = OsPolicy { default_action: Some("allow".into()), egress: vec![] }.to_policy("p").unwrap();
        assert_eq!((open.mode, open.default_action), (Mode::Allowlist, Action::Allow));
    }

    #[test]
    fn bad_actions_and_targets_name_their_field() {
        let os = OsPolicy { default_action: Some("maybe".into()), egress: vec![] };
        assert!(os.to_policy("networkPolicy").unwrap_err().0.message.contains("networkPolicy.defaultAction"));
        let os = OsPolicy { default_action: None, egress: vec![rule("allow", "bad host!")] };
        assert!(os
            .to_policy("networkPolicy")
            .unwrap_err()
            .0
            .message
            .contains("networkPolicy.egress[0].target"));
    }
}
