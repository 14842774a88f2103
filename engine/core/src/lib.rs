//! Influxify's core: the flow model, its compilation and validation, and the pure conversation
//! state machine. This crate does no I/O: no files, no network, no clock, no threads.

pub mod diagnostic;
pub mod duration;
pub mod model;
pub mod source;
mod suggest;
pub mod template;
