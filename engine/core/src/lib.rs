//! Influxify's core: the flow model, its compilation and validation, and the pure conversation
//! state machine. This crate does no I/O: no files, no network, no clock, no threads.

mod answer;
pub mod catalog;
mod checks;
pub mod compile;
pub mod compiled;
pub mod conversation;
pub mod diagnostic;
pub mod duration;
pub mod graph;
mod input_check;
pub mod model;
pub mod source;
pub mod step;
mod suggest;
pub mod template;

pub use catalog::Catalog;
pub use compile::{Compilation, compile};
pub use compiled::{CompiledFlow, FlowSet};
pub use conversation::{
    ConversationState, Effect, Event, OperatorAction, Outbound, Status, Turn, UserMessage,
};
pub use diagnostic::{Code, Diagnostic, Severity};
pub use source::Source;
pub use step::step;
pub mod schema;
