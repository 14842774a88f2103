//! Tools for bot designers on top of the core: loading flow directories from disk, local chat
//! sessions with mocked plugins, and transcript tests (`*.test.yaml`).

pub mod project;
pub mod runner;
pub mod schema;
pub mod session;
pub mod spec;
