//! The agent: the process the engine starts in a long-lived sandbox. It is driven over its
//! standard input, a socket to the runtime, with one JSON message per line ([`protocol`]), and
//! runs each command through a [`runner`] of its own so that a command's timeout ends exactly
//! that command's processes. Code contexts are kernels started the same way, kept running
//! between runs.
//!
//! It runs inside the sandbox with the sandbox's identity and restrictions, so it needs no
//! `unsafe` and trusts nothing it is sent beyond what the sandbox may do anyway.
#![forbid(unsafe_code)]

mod agent;
mod command;
mod context;
mod files;
mod loopback;
pub mod protocol;
pub mod runner;
mod spawn;
pub mod utf8;

pub use agent::serve;
