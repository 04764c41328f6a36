//! # agentwire
//!
//! A WebSocket protocol for running AI agents on a server and watching them work,
//! defined once as Rust types. The JSON Schema (`schema/`) and the TypeScript
//! bindings (`bindings/`) are generated from [`protocol`]; nothing else defines
//! the wire.
//!
//! Without default features this crate is the wire types alone (serde, no I/O).
#![warn(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
pub mod codegen;
pub mod protocol;
#[cfg(feature = "server")]
pub mod runtime;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod store;
