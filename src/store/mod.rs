//! Persistence: agents, executions, progress and chat history in SQLite.
