//! Command-line grammar. Only parsing happens here; every value is validated when the request
//! is resolved (see `request`), with the same ranges as the configuration file.

use std::path::PathBuf;

use clap::{ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Airlock: run untrusted code in a Linux sandbox that nothing escapes.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one command in a fresh sandbox and report what happened (capsule-run compatible).
    Run(Box<RunArgs>),
    /// Check what this host offers the sandbox and how to fix what is missing.
    Doctor(Deferred<DoctorArgs>),
    /// Serve the REST API: long-lived sandboxes, commands, pools (settings in `[server]`).
    Serve(Deferred<ServeArgs>),
    /// Manage the server's API keys (in its data directory; the server need not run).
    Keys(Deferred<KeysArgs>),
    /// Run code on a running `airlock serve` and stream its output: once in a fresh sandbox, or
    /// in a context of a sandbox, which keeps its state between runs.
    Exec(Box<Deferred<ExecArgs>>),
    /// Internal: start a long-lived sandbox from a spec file, its agent driven over stdin.
    #[command(hide = true)]
    Launch(Deferred<LaunchArgs>),
    /// Internal: the agent inside a long-lived sandbox.
    #[command(hide = true)]
    Agent,
    /// Internal: run one command for the agent and end everything it started.
    #[command(name = "agent-run", hide = true)]
    AgentRun(Deferred<AgentRunArgs>),
}

/// The arguments of a subcommand, defined only when that subcommand is used: a start of
/// `airlock run` then does not build the flags of every other subcommand.
#[derive(Debug)]
pub struct Deferred<T>(pub T);

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Deferred)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}

impl<T: Args> Args for Deferred<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }

    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(augment_keeping_about::<T>)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(augment_for_update_keeping_about::<T>)
    }
}

fn augment_keeping_about<T: Args>(cmd: clap::Command) -> clap::Command {
    keeping_about(cmd, T::augment_args)
}

fn augment_for_update_keeping_about<T: Args>(cmd: clap::Command) -> clap::Command {
    keeping_about(cmd, T::augment_args_for_update)
}

/// Apply `augment` and keep the subcommand's own description: the arguments' struct has one
/// too, which would replace it now that it is applied last.
fn keeping_about(cmd: clap::Command, augment: fn(clap::Command) -> clap::Command) -> clap::Command {
    let about = cmd.get_about().cloned();
    let long_about = cmd.get_long_about().cloned();
    let mut cmd = augment(cmd);
    if let Some(about) = about {
        cmd = cmd.about(about);
    }
    if let Some(long_about) = long_about {
        cmd = cmd.long_about(long_about);
    }
    cmd
}

/// How the result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON document on stdout (the default when stdout is not a terminal).
    Json,
    /// The payload's output streamed live, and a one-line summary on stderr.
    Text,
}

/// Flags of `airlock run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Wall-clock limit in milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,
    /// Memory limit of the whole tree, e.g. 256M or 1G.
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU bandwidth in cores (0.5, 2) or millicores (500m).
    #[arg(long, value_name = "CORES")]
    pub cpu: Option<String>,
    /// Relative CPU weight (1024 = normal).
    #[arg(long, value_name = "SHARES")]
    pub cpu_shares: Option<u64>,
    /// CPU-time limit per process in milliseconds.
    #[arg(long, value_name = "MS")]
    pub max_cpu_time: Option<u64>,
    /// Bytes of stdout plus stderr kept, e.g. 1M; the rest is dropped and flagged.
    #[arg(long, value_name = "SIZE")]
    pub max_output: Option<String>,
    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N")]
    pub max_pids: Option<u64>,
    /// Largest file the payload may write, e.g. 64M.
    #[arg(long, value_name = "SIZE")]
    pub max_file_size: Option<String>,
    /// Open files per process.
    #[arg(long, value_name = "N")]
    pub max_open_files: Option<u64>,
    /// Size of the sandbox's /tmp, e.g. 64M.
    #[arg(long, value_name = "SIZE")]
    pub tmp_size: Option<String>,
    /// Share the host's network (off by default: the sandbox has only loopback).
    #[arg(long)]
    pub network: bool,
    /// Let the sandbox reach this host through Airlock's egress proxy, everything else being
    /// refused: a domain, a *.wildcard (subdomains only), an IP or a CIDR (repeatable).
    #[arg(long, value_name = "HOST", action = ArgAction::Append)]
    pub allow: Vec<String>,
    /// Resolve NAME to IP in the egress proxy instead of asking DNS (repeatable; with --allow).
    #[arg(long, value_name = "NAME:IP", action = ArgAction::Append)]
    pub add_host: Vec<String>,
    /// Working directory inside the sandbox.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Host directory to use as /workspace (default: a fresh tmpfs).
    #[arg(long, value_name = "HOST_DIR")]
    pub workspace: Option<PathBuf>,
    /// Environment variable for the payload (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V", action = ArgAction::Append)]
    pub env: Vec<String>,
    /// Host path visible read-only at the same path (repeatable).
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    pub readonly: Vec<PathBuf>,
    /// Host path visible read-write at the same path (repeatable).
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    pub writable: Vec<PathBuf>,
    /// Bind mount SRC:DST[:ro|rw] (repeatable; read-only unless rw).
    #[arg(long, value_name = "SRC:DST[:MODE]", action = ArgAction::Append)]
    pub bind: Vec<String>,
    /// Execution id to report (default: a random UUID).
    #[arg(long, value_name = "ID")]
    pub execution_id: Option<String>,
    /// Read the request as a JSON document from stdin.
    #[arg(long)]
    pub json: bool,
    /// Pretty-print the JSON result.
    #[arg(long)]
    pub pretty: bool,
    /// More logging on stderr (repeat for more).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Configuration file (else $AIRLOCK_CONFIG, ~/.config/airlock/config.toml, /etc/airlock/config.toml).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Profile of the configuration file to apply.
    #[arg(short, long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Write a configuration file with the built-in defaults and exit.
    #[arg(long, value_name = "FILE")]
    pub create_config: Option<PathBuf>,
    /// Print the resolved policy and the host features it needs; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format (default: text on a terminal, json otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The command and its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Flags of `airlock doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `airlock serve`; each overrides `[server]` and its environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (default: $AIRLOCK_CONFIG, ~/.config/airlock/config.toml,
    /// /etc/airlock/config.toml).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub address: Option<String>,
    /// TCP port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Directory of the store and the workspaces.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Pre-started sandboxes kept ready.
    #[arg(long, value_name = "N")]
    pub pool_size: Option<usize>,
    /// Log line format.
    #[arg(long, value_enum)]
    pub log_format: Option<crate::config::LogFormat>,
}

/// `airlock keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Configuration file, for `[server] data_dir`.
    #[arg(short = 'c', long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Directory of the store (overrides the configuration).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: KeysAction,
}

/// Subcommands of `airlock keys`.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key and print its secret (shown only this once).
    Create {
        /// A name for people.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List the keys (ids and names; secrets are not stored).
    List,
    /// Delete a key; its sandboxes stay, reachable by no key.
    Delete {
        /// The key's id (`key_...`).
        id: String,
    },
}

/// Flags of `airlock exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// File of code to run; `-`, or none with standard input not a terminal, reads standard input.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The code to run, instead of a file.
    #[arg(short = 'c', long, value_name = "CODE")]
    pub code: Option<String>,
    /// The language (default: from FILE's extension, else python).
    #[arg(short = 'l', long, value_enum)]
    pub language: Option<ExecLanguage>,
    /// The server, as http://HOST[:PORT] (plain HTTP only).
    #[arg(long, value_name = "URL", env = "AIRLOCK_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// API key, for a server that has keys.
    #[arg(long, value_name = "KEY", env = "AIRLOCK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Run in a context of this running sandbox (state kept between runs); else once in a fresh one.
    #[arg(long, value_name = "ID")]
    pub sandbox: Option<String>,
    /// The context to run in (with --sandbox; default: the language's default context).
    #[arg(long, value_name = "ID")]
    pub context: Option<String>,
    /// Stop the run after this long, e.g. 500ms, 30s, 2m.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Handler mode: call the code's handler with this JSON event.
    #[arg(long, value_name = "JSON")]
    pub event: Option<String>,
    /// File (or `-`) on the standard input of a one-shot run.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print the collected answer as one JSON document instead of streaming.
    #[arg(long)]
    pub json: bool,
}

/// The languages `airlock exec` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecLanguage {
    /// Python 3.
    #[value(alias = "py")]
    Python,
    /// JavaScript on Node.js.
    #[value(alias = "js")]
    Javascript,
    /// Bash.
    #[value(alias = "sh")]
    Bash,
}

/// Flags of the internal `airlock launch`.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// The sandbox's spec, as JSON.
    #[arg(long)]
    pub spec: PathBuf,
}

/// Flags of the internal `airlock agent-run`.
#[derive(Debug, Args)]
pub struct AgentRunArgs {
    /// Working directory of the command.
    #[arg(long)]
    pub cwd: PathBuf,
    /// Kill the command and all it started after this many milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Run the command as a code context's kernel, with this inherited descriptor as its control
    /// channel.
    #[arg(long)]
    pub control_fd: Option<i32>,
    /// The command.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_grammar_is_consistent_with_every_subcommand_built() {
        Cli::command().debug_assert();
    }

    #[test]
    fn deferred_subcommands_parse_and_keep_their_description() {
        let cli = Cli::try_parse_from(["airlock", "keys", "list"]).unwrap();
        assert!(matches!(cli.command, Command::Keys(_)), "{cli:?}");
        let mut command = Cli::command();
        command.build();
        let serve = command.find_subcommand("serve").unwrap();
        assert_eq!(
            serve.get_about().map(ToString::to_string).as_deref(),
            Some("Serve the REST API: long-lived sandboxes, commands, pools (settings in `[server]`)")
        );
        assert!(serve.get_arguments().any(|a| a.get_id() == "port"), "serve's flags are defined once built");
    }
}
