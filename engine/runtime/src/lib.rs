//! The durable runtime (in progress).
