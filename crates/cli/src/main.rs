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

use crate::args::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => run_cmd::main(*args),
        Command::Doctor(args) => doctor::main(&args),
        Command::Serve(args) => serve::main(&args),
        Command::Keys(args) => serve::keys(&args),
        Command::Exec(args) => exec::main(*args),
        Command::Launch(args) => launch::main(&args),
        Command::Agent => launch::agent(),
        Command::AgentRun(args) => airlock_agent::runner::main(
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
