//! `airlock run`: resolve the request, run it in the engine, print the result.

use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, SystemTime};

use airlock_jail::{Collector, JailError, Outcome, OutputSink};

use airlock_runtime::egress::record::{Denial, MAX_KEPT_DENIALS};

use crate::args::{Format, RunArgs};
use crate::egress::EgressSink;
use crate::error::{RunError, EXIT_SETUP_FAILED};
use crate::report::{self, Report};
use crate::request::{self, Request};
use crate::{concurrency, config, human};

/// Run the `run` subcommand; returns the process exit status.
pub fn main(args: RunArgs) -> i32 {
    init_logging(args.verbose);
    if let Some(path) = &args.create_config {
        return create_config(path);
    }
    let format = args.format.unwrap_or(if args.json || !std::io::stdout().is_terminal() {
        Format::Json
    } else {
        Format::Text
    });
    let id = args.execution_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let started = SystemTime::now();
    let resolved = read_request_document(&args).and_then(|doc| request::resolve(&args, doc.as_deref()));
    let mut req = match resolved {
        Ok(req) => req,
        Err(e) => return fail(&e, &id, started, format, args.pretty),
    };
    if args.dry_run {
        print_json(&request::dry_run(&id, &req), args.pretty);
        return 0;
    }
    let slot = match acquire_slot(&req) {
        Ok(slot) => slot,
        Err(e) => return fail(&e, &id, started, format, args.pretty),
    };
    tracing::debug!(slot = slot.index(), "running {:?}", req.spec.argv);
    let status = match format {
        Format::Json => run_json(&mut req, id, started, args.pretty),
        Format::Text => run_text(&mut req, &id, started),
    };
    drop(slot);
    status
}

/// Run the engine; the built-in limits it had to leave out are noted in the request.
fn run_engine(req: &mut Request, sink: &mut dyn OutputSink) -> Result<Outcome, JailError> {
    let mut sink = EgressSink { inner: sink, egress: req.egress.clone() };
    let outcome = airlock_jail::run(&req.spec, &mut sink)?;
    if !outcome.applied.left_out.is_empty() {
        tracing::info!("no usable cgroup: running without the built-in cgroup limits");
        req.note_left_out(outcome.applied.left_out);
    }
    Ok(outcome)
}

/// What the run's egress proxy refused.
fn denials(req: &Request) -> Vec<Denial> {
    req.egress.as_ref().map(|e| e.denials(0, MAX_KEPT_DENIALS).0).unwrap_or_default()
}

fn run_json(req: &mut Request, id: String, started: SystemTime, pretty: bool) -> i32 {
    let mut out = Collector::default();
    match run_engine(req, &mut out) {
        Ok(outcome) => {
            let mut r =
                Report::from_outcome(id, &outcome, &out, started, SystemTime::now(), &req.spec.limits);
            r.warnings.clone_from(&req.warnings);
            r.network_denials = denials(req);
            print_json(&r, pretty);
            report::exit_status(&outcome)
        }
        Err(e) => fail(&RunError::from(e), &id, started, Format::Json, pretty),
    }
}

fn run_text(req: &mut Request, id: &str, started: SystemTime) -> i32 {
    match run_engine(req, &mut human::Passthrough) {
        Ok(outcome) => {
            for denial in denials(req) {
                eprintln!("airlock: egress to {} denied ({})", denial.target, denial.rule);
            }
            eprintln!("{}", human::summary(&outcome));
            report::exit_status(&outcome)
        }
        Err(e) => fail(&RunError::from(e), id, started, Format::Text, false),
    }
}

fn fail(e: &RunError, id: &str, started: SystemTime, format: Format, pretty: bool) -> i32 {
    match format {
        Format::Json => print_json(&Report::from_error(id.to_string(), e, started), pretty),
        Format::Text => eprintln!("{}", human::error_lines(e)),
    }
    e.exit_status()
}

fn print_json(value: &impl serde::Serialize, pretty: bool) {
    let text = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", text.unwrap_or_default());
}

/// With `--json`, the request document comes on stdin.
fn read_request_document(args: &RunArgs) -> Result<Option<String>, RunError> {
    if !args.json {
        return Ok(None);
    }
    let mut doc = String::new();
    std::io::stdin().read_to_string(&mut doc).map_err(|e| {
        RunError::invalid("E1001", "stdin", format!("cannot read the request document from stdin: {e}"))
    })?;
    Ok(Some(doc))
}

fn create_config(path: &std::path::Path) -> i32 {
    match config::create_config(path) {
        Ok(()) => {
            eprintln!("airlock: wrote the default configuration to {}", path.display());
            0
        }
        Err(e) => {
            eprintln!("airlock: error {}: {e}\n  hint: {}", e.code(), e.hint());
            EXIT_SETUP_FAILED
        }
    }
}

/// `[security] max_concurrent_executions` across every `airlock run` of this user.
fn acquire_slot(req: &Request) -> Result<concurrency::Slot, RunError> {
    let dir = runtime_dir();
    let wait = req.spec.limits.wall_time.unwrap_or(Duration::from_secs(30));
    concurrency::acquire(&dir, req.max_concurrent, wait).map_err(|e| match e {
        concurrency::ConcurrencyError::Exhausted { .. } => RunError::Busy(e.to_string()),
        other => RunError::RuntimeDir(other.to_string()),
    })
}

/// Where `airlock run` keeps its concurrency slots.
pub fn runtime_dir() -> std::path::PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return "/run/airlock".into();
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => std::path::Path::new(&dir).join("airlock"),
        None => std::env::temp_dir().join(format!("airlock-{uid}")),
    }
}

/// Logs go to stderr only, so stdout stays one JSON document. `RUST_LOG` refines `-v`.
fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::LevelFilter;
    let level = match verbose {
        0 | 1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // A subscriber costs a noticeable part of a sandbox start, and at the default level the
    // CLI logs nothing (its errors go into the result): install one only when asked to.
    let _ = match std::env::var_os("RUST_LOG") {
        Some(_) => fmt.with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init(),
        None if verbose > 0 => fmt.with_max_level(level).try_init(),
        None => Ok(()),
    };
}
