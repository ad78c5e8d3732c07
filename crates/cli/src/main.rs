//! The `airlock` binary. `anyhow` stops here: every layer below returns typed errors.
#![forbid(unsafe_code)]

mod args;
mod concurrency;
mod config;
mod doctor;
mod egress;
mod error;
mod exec;
mod human;
mod launch;
mod report;
mod request;
mod run_cmd;
mod serve;

use clap::Parser;

use crate::args::{Cli, Command, Deferred};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => run_cmd::main(*args),
        Command::Doctor(args) => doctor::main(&args.0),
        Command::Serve(args) => serve::main(&args.0),
        Command::Keys(args) => serve::keys(&args.0),
        Command::Exec(args) => exec::main(args.0),
        Command::Launch(args) => launch::main(&args.0),
        Command::Agent => launch::agent(),
        Command::AgentRun(Deferred(args)) => airlock_agent::runner::main(
            &args.argv,
            &airlock_agent::runner::RunnerOptions {
                cwd: args.cwd,
                timeout: args.timeout_ms.map(std::time::Duration::from_millis),
                control_fd: args.control_fd,
            },
        ),
    };
    std::process::exit(code);
}
