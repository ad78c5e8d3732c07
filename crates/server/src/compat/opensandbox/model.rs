//! The lifecycle API's bodies, and how a runtime record reads in them: camelCase fields,
//! capitalised states, RFC 3339 times.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

pub use crate::api::rfc3339;

use airlock_runtime::{SandboxRecord, SandboxState};
use serde::{Deserialize, Serialize};

use super::error::OsError;
use super::policy::OsPolicy;

/// `POST /v1/sandboxes`. Fields Airlock has no use for (`platform`, `extensions`,
/// `secureAccess`, `resourceRequests`, registry `auth`) are accepted and ignored; ones it cannot
/// honour (`volumes`, `snapshotId`, `templateId`, `credentialProxy`, `lifecycle`) are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    /// The image; picks the template.
    pub image: Option<ImageSpec>,
    /// Seconds to live; `null` for none.
    pub timeout: Option<u64>,
    /// `cpu` (`"500m"`, `"2"`), `memory` (`"512Mi"`), and others Airlock refuses.
    #[serde(default)]
    pub resource_limits: BTreeMap<String, String>,
    /// Variables for every process.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The main background process.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Egress.
    pub network_policy: Option<OsPolicy>,
    /// Storage mounts: not supported.
    pub volumes: Option<Vec<serde_json::Value>>,
    /// Not supported.
    pub snapshot_id: Option<String>,
    /// Not supported.
    pub template_id: Option<String>,
    /// Not supported.
    pub credential_proxy: Option<serde_json::Value>,
    /// Not supported.
    pub lifecycle: Option<serde_json::Value>,
}

/// `{"uri": "python:3.11"}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ImageSpec {
    /// The image reference.
    pub uri: String,
}

/// `POST .../renew-expiration`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewRequest {
    /// The new expiry, RFC 3339.
    pub expires_at: String,
}

/// A sandbox's status.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    state: &'static str,
    reason: String,
    message: String,
    last_transition_at: String,
}

/// A sandbox as the lifecycle API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxView {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<ImageSpec>,
    status: StatusView,
    metadata: BTreeMap<String, String>,
    entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    created_at: String,
}

/// A page of sandboxes.
#[derive(Debug, Serialize)]
pub struct ListView {
    /// This page.
    pub items: Vec<SandboxView>,
    /// Where it is.
    pub pagination: Pagination,
}

/// Page numbers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// 1-based.
    pub page: usize,
    /// Items per page.
    pub page_size: usize,
    /// Items in all pages.
    pub total_items: usize,
    /// Pages.
    pub total_pages: usize,
    /// Whether a later page has items.
    pub has_next_page: bool,
}

/// OpenSandbox's name of a state.
pub fn state_name(state: SandboxState) -> &'static str {
    match state {
        SandboxState::Pending => "Pending",
        SandboxState::Running => "Running",
        SandboxState::Paused => "Paused",
        SandboxState::Stopping => "Stopping",
        SandboxState::Terminated => "Terminated",
        SandboxState::Failed => "Failed",
    }
}

/// The state OpenSandbox names `name` (any case).
pub fn parse_state(name: &str) -> Option<SandboxState> {
    SandboxState::ALL.into_iter().find(|s| state_name(*s).eq_ignore_ascii_case(name))
}

/// OpenSandbox's reason for Airlock's: the documented ones where they mean the same.
fn reason(reason: &str) -> String {
    match reason {
        "deleted" => "user_delete",
        "expired" => "ttl_expiry",
        "sandbox_exited" => "runtime_error",
        "start_failed" => "provision_failed",
        other => other,
    }
    .to_owned()
}

/// Parse RFC 3339 with `Z` or a numeric offset (`+08:00`), as clients write it.
pub fn parse_rfc3339(field: &str, text: &str) -> Result<SystemTime, OsError> {
    let bad = || OsError::invalid(field, format!("{text:?} is not an RFC 3339 time"));
    let text = text.trim();
    let (base, offset_s) = match text.rfind(['+', '-']).filter(|&i| i > 10) {
        Some(i) => {
            let (hours, minutes) = text[i + 1..].split_once(':').ok_or_else(bad)?;
            let (hours, minutes): (i64, i64) =
                (hours.parse().map_err(|_| bad())?, minutes.parse().map_err(|_| bad())?);
            let sign = if text.as_bytes()[i] == b'-' { -1 } else { 1 };
            (&text[..i], sign * (hours * 3600 + minutes * 60))
        }
        None => (text.trim_end_matches(['Z', 'z']), 0),
    };
    let local = humantime::parse_rfc3339_weak(base).map_err(|_| bad())?;
    let shift = Duration::from_secs(offset_s.unsigned_abs());
    Ok(if offset_s >= 0 { local - shift } else { local + shift })
}

impl SandboxView {
    /// `record` as OpenSandbox shows it.
    pub fn of(record: SandboxRecord) -> SandboxView {
        let status = &record.status;
        let message = match (status.state, &record.image) {
            (SandboxState::Running, Some(image)) => {
                format!("running; image {image} uses the Airlock template `{}`", record.template)
            }
            _ => status.message.clone(),
        };
        SandboxView {
            id: record.id,
            image: record.image.map(|uri| ImageSpec { uri }),
            status: StatusView {
                state: state_name(status.state),
                reason: reason(&status.reason),
                message,
                last_transition_at: rfc3339(status.since_ms),
            },
            metadata: record.metadata,
            entrypoint: record.entrypoint,
            expires_at: record.expires_ms.map(rfc3339),
            created_at: rfc3339(record.created_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn times_round_trip_with_any_offset() {
        let at = parse_rfc3339("t", "2026-11-25T10:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("t", "2026-11-25T18:00:00+08:00").unwrap(), at);
        assert_eq!(parse_rfc3339("t", "2026-11-25T09:30:00.000-00:30").unwrap(), at);
        let ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert_eq!(rfc3339(ms), "2026-11-25T10:00:00.000Z");
        assert!(parse_rfc3339("expiresAt", "tomorrow").unwrap_err().0.message.contains("expiresAt"));
    }

    #[test]
    fn states_are_capitalised_both_ways() {
        for state in SandboxState::ALL {
            assert_eq!(parse_state(state_name(state)), Some(state));
        }
        assert_eq!(parse_state("running"), Some(SandboxState::Running));
        assert_eq!(parse_state("Pausing"), None);
    }
}
