//! Prometheus text exposition for `/metrics`: requests and their durations by route, errors by
//! code, commands started, commands and code runs ended, and the runtime's gauges (sandboxes by
//! state, running commands).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use airlock_runtime::RuntimeStats;

#[derive(Default)]
struct RouteStats {
    count: u64,
    seconds: f64,
}

/// Counters kept by the server.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), RouteStats>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    commands_started: AtomicU64,
}

impl Metrics {
    /// Count one answered request.
    pub fn observe(
        &self,
        method: &str,
        route: &str,
        status: u16,
        took: Duration,
        error: Option<&'static str>,
    ) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            let entry = requests.entry((method.to_owned(), route.to_owned(), status)).or_default();
            entry.count += 1;
            entry.seconds += took.as_secs_f64();
        }
        if let Some(code) = error {
            *self.errors.lock().unwrap_or_else(|e| e.into_inner()).entry(code).or_default() += 1;
        }
    }

    /// Count one command started.
    pub fn command_started(&self) {
        self.commands_started.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, stats: &RuntimeStats) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP airlock_sandboxes Sandboxes by state.\n# TYPE airlock_sandboxes gauge");
        for (state, count) in &stats.sandboxes {
            let _ = writeln!(out, "airlock_sandboxes{{state=\"{}\"}} {count}", state.as_str());
        }
        let _ = writeln!(
            out,
            "# HELP airlock_commands_running Commands running now.\n# TYPE airlock_commands_running gauge"
        );
        let _ = writeln!(out, "airlock_commands_running {}", stats.running_commands);
        let _ = writeln!(out, "# HELP airlock_commands_started_total Commands started.\n# TYPE airlock_commands_started_total counter");
        let _ =
            writeln!(out, "airlock_commands_started_total {}", self.commands_started.load(Ordering::Relaxed));
        let commands = stats.commands_ended.iter().map(|(s, n, t)| (s.as_str(), *n, *t));
        ended_by_status(
            &mut out,
            ("commands_ended_total", "Commands ended"),
            ("command", "ended commands"),
            commands,
        );
        let runs = stats.code_runs_ended.iter().map(|(s, n, t)| (s.as_str(), *n, *t));
        ended_by_status(
            &mut out,
            ("code_runs_total", "Runs of code in contexts that ended"),
            ("code_run", "runs of code that ended"),
            runs,
        );
        let _ = writeln!(out, "# HELP airlock_pool_ready Pre-started sandboxes ready to be claimed.\n# TYPE airlock_pool_ready gauge");
        let _ = writeln!(out, "airlock_pool_ready {}", stats.pool_ready);
        let _ = writeln!(
            out,
            "# HELP airlock_http_requests_total Requests answered.\n# TYPE airlock_http_requests_total counter"
        );
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((method, route, status), s) in requests.iter() {
            let _ = writeln!(
                out,
                "airlock_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                s.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP airlock_http_request_duration_seconds_sum Time spent answering.\n# TYPE airlock_http_request_duration_seconds_sum counter"
        );
        for ((method, route, status), s) in requests.iter() {
            let _ = writeln!(
                out,
                "airlock_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {:.6}",
                escape(route),
                s.seconds
            );
        }
        let _ = writeln!(
            out,
            "# HELP airlock_errors_total Error answers by code.\n# TYPE airlock_errors_total counter"
        );
        for (code, count) in self.errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "airlock_errors_total{{code=\"{code}\"}} {count}");
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A counter of ended things by status, `airlock_{count}{{status}}`, and the sum of their wall
/// time, `airlock_{kind}_duration_seconds_sum{{status}}`.
fn ended_by_status<'a>(
    out: &mut String,
    (count, count_help): (&str, &str),
    (kind, kind_help): (&str, &str),
    rows: impl Iterator<Item = (&'a str, u64, f64)> + Clone,
) {
    let _ = writeln!(out, "# HELP airlock_{count} {count_help}, by status.\n# TYPE airlock_{count} counter");
    for (status, n, _) in rows.clone() {
        let _ = writeln!(out, "airlock_{count}{{status=\"{status}\"}} {n}");
    }
    let seconds = format!("airlock_{kind}_duration_seconds_sum");
    let _ = writeln!(out, "# HELP {seconds} Wall time of {kind_help}, by status.\n# TYPE {seconds} counter");
    for (status, _, t) in rows {
        let _ = writeln!(out, "{seconds}{{status=\"{status}\"}} {t:.3}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counts_by_route_and_code() {
        let metrics = Metrics::default();
        metrics.observe(
            "GET",
            "/v1/sandboxes/{id}",
            404,
            Duration::from_millis(2),
            Some("SANDBOX_NOT_FOUND"),
        );
        metrics.observe(
            "GET",
            "/v1/sandboxes/{id}",
            404,
            Duration::from_millis(2),
            Some("SANDBOX_NOT_FOUND"),
        );
        metrics.command_started();
        let stats = RuntimeStats {
            commands_ended: vec![(airlock_runtime::CommandStatus::Timeout, 2, 1.5)],
            ..RuntimeStats::default()
        };
        let text = metrics.render(&stats);
        assert!(text.contains("airlock_commands_ended_total{status=\"timeout\"} 2"), "{text}");
        assert!(text.contains("airlock_command_duration_seconds_sum{status=\"timeout\"} 1.500"), "{text}");
        assert!(
            text.contains(
                "airlock_http_requests_total{method=\"GET\",route=\"/v1/sandboxes/{id}\",status=\"404\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("airlock_errors_total{code=\"SANDBOX_NOT_FOUND\"} 2"), "{text}");
        assert!(text.contains("airlock_commands_started_total 1"), "{text}");
    }
}
