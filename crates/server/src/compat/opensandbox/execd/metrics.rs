//! `/ping`, `/metrics` and `/metrics/watch`. The runtime keeps no usage of a whole sandbox, so
//! a sample is taken inside it: a command reads `/proc/*/stat` twice, half a second apart, and
//! the sandbox's own PID namespace makes that exactly its processes. Memory used is the sum
//! of their resident sets (shared pages count once per process); CPU is their CPU time over
//! the interval, as a share of the CPUs the sandbox may use. The totals are its limits.

use std::collections::HashMap;
use std::time::Duration;

use airlock_runtime::{now_ms, SandboxState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::command::{run_to_end, shell};
use crate::compat::opensandbox::access::SandboxAccess;
use crate::compat::opensandbox::error::OsError;
use crate::error::ApiError;
use crate::state::AppState;

/// The sampling script: page size, clock ticks, online CPUs, then two readings of every
/// process's `stat`, each after the time in nanoseconds.
const SAMPLE: &str = "getconf PAGESIZE; getconf CLK_TCK; getconf _NPROCESSORS_ONLN; echo ---; \
    date +%s%N; cat /proc/[0-9]*/stat 2>/dev/null; echo ---; sleep 0.5; \
    date +%s%N; cat /proc/[0-9]*/stat 2>/dev/null; exit 0";

/// How often `/metrics/watch` sends a sample, at most.
const WATCH_EVERY: Duration = Duration::from_secs(1);

const MIB: f64 = (1u64 << 20) as f64;

/// `GET /ping`: 200 while the sandbox runs (its agent is connected), 503 otherwise.
pub(super) async fn ping(
    State(state): State<AppState>,
    access: SandboxAccess,
) -> Result<StatusCode, OsError> {
    let record = state.runtime.get(access.owner(), &access.id)?;
    if record.status.state == SandboxState::Running {
        return Ok(StatusCode::OK);
    }
    Err(OsError(ApiError::new(
        "AGENT_UNAVAILABLE",
        format!("sandbox {} is {}, so nothing answers in it", access.id, record.status.state.as_str()),
        "wait until it runs, or resume it",
    )))
}

/// A sandbox's resource use, as execd reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Metrics {
    cpu_count: f64,
    cpu_used_pct: f64,
    mem_total_mib: f64,
    mem_used_mib: f64,
    timestamp: i64,
}

/// `GET /metrics`.
pub(super) async fn snapshot(
    State(state): State<AppState>,
    access: SandboxAccess,
) -> Result<Json<Metrics>, OsError> {
    Ok(Json(sample(&state, &access).await?))
}

/// `GET /metrics/watch`: a sample about every second, as Server-Sent Events, until the client
/// goes or the sandbox stops.
pub(super) async fn watch(State(state): State<AppState>, access: SandboxAccess) -> Result<Response, OsError> {
    let first = sample(&state, &access).await?;
    let samples = futures_util::stream::unfold(Some(first), move |next| {
        let (state, access) = (state.clone(), access.clone());
        async move {
            let metrics = next?;
            let data = serde_json::to_string(&metrics).unwrap_or_default();
            tokio::time::sleep(WATCH_EVERY.saturating_sub(Duration::from_millis(500))).await;
            let after = sample(&state, &access).await.ok();
            Some((Ok::<_, std::convert::Infallible>(Event::default().data(data)), after))
        }
    });
    Ok(Sse::new(samples).keep_alive(KeepAlive::default()).into_response())
}

/// Take one sample in the sandbox.
async fn sample(state: &AppState, access: &SandboxAccess) -> Result<Metrics, OsError> {
    let limits = state.runtime.get(access.owner(), &access.id)?.limits;
    let (_, logs) = run_to_end(state, access, shell(SAMPLE.to_owned())).await?;
    let reading = Reading::parse(&logs.stdout).ok_or_else(|| {
        OsError(ApiError::new(
            "AGENT_REFUSED",
            format!("the sandbox's usage could not be read: {}", logs.stderr.trim()),
            "the sandbox needs `getconf`, `date`, `cat` and `sleep`, as its template from the host has",
        ))
    })?;
    let quota = limits.cpu_millis.map(|m| m as f64 / 1000.0);
    let cpu_count = quota.map_or(reading.cpus, |q| q.min(reading.cpus));
    Ok(Metrics {
        cpu_count,
        cpu_used_pct: reading.cpu_percent(cpu_count),
        mem_total_mib: limits.memory_bytes as f64 / MIB,
        mem_used_mib: reading.rss_bytes() as f64 / MIB,
        timestamp: now_ms(),
    })
}

/// What the sampling script printed.
#[derive(Debug, PartialEq)]
struct Reading {
    page_bytes: u64,
    ticks_per_second: u64,
    cpus: f64,
    /// Nanoseconds between the two readings.
    interval_ns: u64,
    /// The processes at the first and at the second reading.
    before: Processes,
    after: Processes,
}

/// Per process id: CPU ticks used (user and system), then resident pages.
type Processes = HashMap<u32, (u64, u64)>;

impl Reading {
    fn parse(text: &str) -> Option<Reading> {
        let mut sections = text.split("---\n");
        let mut head = sections.next()?.lines().map(|l| l.trim().parse::<u64>().ok());
        let (page_bytes, ticks_per_second, cpus) = (head.next()??, head.next()??, head.next()??);
        let (t0, before) = processes(sections.next()?)?;
        let (t1, after) = processes(sections.next()?)?;
        (ticks_per_second > 0 && cpus > 0).then_some(Reading {
            page_bytes,
            ticks_per_second,
            cpus: cpus as f64,
            interval_ns: t1.checked_sub(t0).filter(|ns| *ns > 0)?,
            before,
            after,
        })
    }

    /// CPU time used between the readings, as a percentage of `cpus` CPUs (0 to 100).
    fn cpu_percent(&self, cpus: f64) -> f64 {
        let ticks: u64 = self
            .after
            .iter()
            .map(|(pid, (t, _))| t.saturating_sub(self.before.get(pid).map_or(0, |(b, _)| *b)))
            .sum();
        let seconds = ticks as f64 / self.ticks_per_second as f64;
        let percent = seconds / (self.interval_ns as f64 / 1e9) / cpus * 100.0;
        (percent.clamp(0.0, 100.0) * 100.0).round() / 100.0
    }

    /// Resident memory of every process at the second reading.
    fn rss_bytes(&self) -> u64 {
        self.after.values().map(|(_, pages)| pages * self.page_bytes).sum()
    }
}

/// A reading: the time, then one `/proc/PID/stat` line per process.
fn processes(section: &str) -> Option<(u64, Processes)> {
    let mut lines = section.lines();
    let time = lines.next()?.trim().parse().ok()?;
    let stats = lines.filter_map(stat_line).collect();
    Some((time, stats))
}

/// (pid, (utime + stime, rss pages)) of a `stat` line; the command name, in parentheses, may
/// hold spaces and parentheses itself, so the fields are counted from the last `)`.
fn stat_line(line: &str) -> Option<(u32, (u64, u64))> {
    let (pid, rest) = line.split_once(" (")?;
    let (_, fields) = rest.rsplit_once(") ")?;
    let fields: Vec<&str> = fields.split_whitespace().collect();
    // After the name: state is field 3 of proc(5), utime 14, stime 15, rss 24.
    let number = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some((pid.trim().parse().ok()?, (number(14)? + number(15)?, number(24)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, name: &str, ticks: (u64, u64), rss: u64) -> String {
        let mut fields = vec!["S".to_owned()];
        fields.extend((4..=13).map(|n| n.to_string()));
        fields.extend([ticks.0.to_string(), ticks.1.to_string()]);
        fields.extend((16..=23).map(|n| n.to_string()));
        fields.push(rss.to_string());
        fields.extend((25..=52).map(|n| n.to_string()));
        format!("{pid} ({name}) {}", fields.join(" "))
    }

    #[test]
    fn a_reading_gives_cpu_and_memory() {
        let text = format!(
            "4096\n100\n4\n---\n1000000000\n{}\n{}\n---\n1500000000\n{}\n{}\n{}\n",
            stat(1, "airlock", (10, 5), 100),
            stat(7, "my (odd) name", (50, 0), 200),
            stat(1, "airlock", (10, 5), 100),
            stat(7, "my (odd) name", (90, 10), 300),
            stat(9, "new", (0, 0), 50),
        );
        let reading = Reading::parse(&text).unwrap();
        assert_eq!(reading.rss_bytes(), (100 + 300 + 50) * 4096);
        // 50 ticks of 10 ms in 0.5 s is one CPU busy: 25% of 4.
        assert_eq!(reading.cpu_percent(4.0), 25.0);
        assert_eq!(reading.cpu_percent(0.5), 100.0, "capped at all the sandbox may use");
    }

    #[test]
    fn broken_output_is_no_reading() {
        assert_eq!(Reading::parse(""), None);
        assert_eq!(Reading::parse("4096\n100\n4\n---\n5\n"), None);
        assert_eq!(Reading::parse("x\n100\n4\n---\n1\n---\n2\n"), None);
        assert_eq!(stat_line("garbage"), None);
    }
}
