//! `airlock exec`: run code on a running `airlock serve` and show its output as it streams.
//!
//! Everything runs on one thread: a current-thread tokio runtime drives the request, the
//! connection (spawned by the client), Ctrl-C, and an interrupt request when one is sent.

mod client;
mod display;
mod end;
mod error;
mod plan;
mod sse;

use std::future::Future;

use tokio::signal::unix::{signal, Signal, SignalKind};

use self::client::Client;
use self::display::RunEvent;
use self::end::{RunEnd, EXIT_INTERRUPTED, EXIT_REQUEST_FAILED};
use self::error::ExecError;
use self::plan::Plan;
use crate::args::ExecArgs;

/// Run the `exec` subcommand; returns the process exit status.
pub fn main(args: ExecArgs) -> i32 {
    let status = plan::resolve(args).and_then(|plan| {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ExecError::Setup)?;
        let status = runtime.block_on(run(&plan));
        // When Ctrl-C stops the wait, a name lookup may still sit in the blocking pool: do not
        // wait for it.
        runtime.shutdown_background();
        status
    });
    match status {
        Ok(status) => status,
        Err(e) => {
            eprintln!("airlock exec: {}: {e}\n  hint: {}", e.code(), e.hint());
            EXIT_REQUEST_FAILED
        }
    }
}

async fn run(plan: &Plan) -> Result<i32, ExecError> {
    let mut ctrl_c = CtrlC::new(plan)?;
    if plan.json {
        let Some(answer) = ctrl_c.guard(plan.client.post_json(&plan.path, &plan.body)).await else {
            return Ok(EXIT_INTERRUPTED);
        };
        let answer = answer?;
        let end: RunEnd = serde_json::from_value(answer.clone())
            .map_err(|e| plan.client.bad_answer(format!("answered with no run's end ({e})")))?;
        println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
        return Ok(end.exit_status());
    }
    let Some(events) = ctrl_c.guard(plan.client.post_events(&plan.path, &plan.body)).await else {
        return Ok(EXIT_INTERRUPTED);
    };
    let mut events = events?;
    loop {
        let Some(next) = ctrl_c.guard(events.next()).await else {
            return Ok(EXIT_INTERRUPTED);
        };
        let Some(event) = next? else {
            return Err(events.bad_answer("ended the stream before the run's `end` event".to_owned()).into());
        };
        let parsed = RunEvent::parse(&event)
            .map_err(|e| events.bad_answer(format!("sent a malformed `{}` event ({e})", event.name)))?;
        match parsed {
            Some(RunEvent::End(end)) => {
                for note in end.notes() {
                    eprintln!("{note}");
                }
                return Ok(end.exit_status());
            }
            Some(event) => {
                if let Some(shown) = display::render(&event, plan.handler) {
                    display::show(shown);
                }
            }
            None => {}
        }
    }
}

/// What Ctrl-C does while a run goes on. In a context, the first one asks the server to
/// interrupt the run (as Ctrl-C in a REPL does) and the wait goes on to the run's end, so its
/// output and status still come; a second one stops waiting. A one-shot run has no context to
/// interrupt, so one Ctrl-C stops waiting (and the server ends the run).
struct CtrlC {
    signal: Signal,
    /// The server, and where to post the interrupt; `None` for a one-shot run.
    interrupt: Option<(Client, String)>,
    /// Whether the interrupt was posted.
    sent: bool,
}

impl CtrlC {
    /// Catch SIGINT from now on.
    fn new(plan: &Plan) -> Result<CtrlC, ExecError> {
        Ok(CtrlC {
            signal: signal(SignalKind::interrupt()).map_err(ExecError::Setup)?,
            interrupt: plan.interrupt.clone().map(|path| (plan.client.clone(), path)),
            sent: false,
        })
    }

    /// `work`'s output, or `None` when Ctrl-C means to stop waiting for it.
    async fn guard<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => return Some(output),
                _ = self.signal.recv() => match &self.interrupt {
                    Some((client, path)) if !self.sent => {
                        self.sent = true;
                        eprintln!("airlock exec: interrupting the run (Ctrl-C again to stop waiting)");
                        let (client, path) = (client.clone(), path.clone());
                        tokio::spawn(async move {
                            if let Err(e) = client.post_empty(&path).await {
                                eprintln!("airlock exec: cannot interrupt the run: {}: {e}", e.code());
                            }
                        });
                    }
                    _ => return None,
                },
            }
        }
    }
}
