//! The `airlock` binary. `anyhow` stops here: every layer below returns typed errors.
#![forbid(unsafe_code)]

mod args;
mod concurrency;
mod config;
mod doctor;
mod error;
mod human;
mod report;
mod request;
mod run_cmd;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => run_cmd::main(*args),
        Command::Doctor(args) => doctor::main(&args),
    };
    std::process::exit(code);
}
