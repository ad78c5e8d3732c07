//! The Airlock runtime: long-lived sandboxes on the engine, each with the agent as its payload,
//! the commands that run in them, and the SQLite store that keeps their records across restarts.
//! It is async (tokio) and knows nothing of HTTP; front doors turn requests into its typed
//! values ([`NewSandbox`], [`CommandSpec`]) and its [`RuntimeError`]s into responses.
#![forbid(unsafe_code)]

mod agent_conn;
mod code;
mod command;
mod config;
mod context;
pub mod egress;
mod error;
mod files;
mod kernel;
pub mod keys;
mod launch;
mod links;
mod model;
mod network;
mod oneshot;
pub mod outbox;
pub mod relay;
mod runtime;
mod splice;
mod store;

pub use airlock_agent::protocol::{CodeMode, Language};
pub use airlock_agent::protocol::{FileErrorKind, FileInfo, FileKind, MAX_LIST_DEPTH};
pub use code::{
    CodeEvent, CodeEvents, CodeOutcome, CodeResult, CodeRun, CodeStatus, CodeUsage, ContextRecord, NewContext,
};
pub use command::{CommandEvent, CommandHandle, Logs};
pub use config::{NetworkConfig, RuntimeConfig, Template};
pub use context::MAX_CONTEXTS_PER_SANDBOX;
pub use error::{ErrorClass, RuntimeError};
pub use files::{FileChunk, FileReader, Listing, WriteOptions};
pub use links::{IngressLink, LinkRefusal, MAX_LINK_SECONDS};
pub use model::{
    now_ms, CommandRecord, CommandSpec, CommandStatus, CommandUsage, NewSandbox, Page, SandboxFilter,
    SandboxLimits, SandboxRecord, SandboxState, Status, DEFAULT_TEMPLATE,
};
pub use network::MAX_DENIALS_PER_PAGE;
pub use oneshot::OneShot;
pub use runtime::{Runtime, RuntimeStats};
pub use store::{Store, StoredKey};
