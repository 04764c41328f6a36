//! Agent runtimes: what runs an agent when an execution or a chat step asks.
