//! The routes, one module per resource.

pub mod code;
pub mod commands;
pub mod files;
pub mod links;
pub mod network;
pub mod sandboxes;
pub mod system;
