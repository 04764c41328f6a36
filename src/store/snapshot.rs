//! The writer's read transaction, kept open from one commit to the next.
//!
//! In WAL mode every transaction begins by taking a read lock on a slot of
//! the WAL-index, and a slot whose mark is not the WAL's end must first be
//! locked exclusively to move its mark there. The writer is usually the only
//! connection of the process in a transaction, so SQLite's unix VFS asks the
//! kernel each time (`fcntl`): four calls a commit for the read lock, two for
//! the write lock.
//!
//! A [`Snapshot`] is a statement stepped once inside a batch's transaction
//! and not reset: after the `COMMIT` the connection stays in a read
//! transaction that ends at the WAL's end (its own commit), and the next
//! `BEGIN IMMEDIATE` upgrades it to a write transaction without touching
//! the read lock. Only the write lock's two calls remain.
//!
//! What it holds back, and why that stays small:
//!
//! - **Checkpoints** copy frames only up to the oldest read mark still
//!   locked. The snapshot's mark is where the WAL ended when it was taken:
//!   the writer takes a new one after [`HOLD`], and the committer thread
//!   lets go of one once nothing was written for [`HOLD`] (a caller that
//!   committed inline and took one wakes the thread if it sleeps without a
//!   timeout).
//! - **A `RESTART` or `TRUNCATE` checkpoint**, ours or another process's,
//!   takes the write lock and then waits for every reader, the snapshot
//!   included. A connection already reading does not wait for the write lock
//!   (SQLite returns `SQLITE_BUSY` at once, so that two readers upgrading
//!   cannot deadlock): the writer then lets go of its snapshot and begins
//!   again, waiting as any writer does.
//! - **Another process's commit** makes the snapshot stale
//!   (`SQLITE_BUSY_SNAPSHOT` at the upgrade): the same.
//! - **Readers** of other processes share slots with it or take another;
//!   it holds a slot shared, never exclusive.

use std::ffi::{CStr, c_int};
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ffi};

/// How long the writer keeps one read transaction open, and how long the
/// committer thread waits for a write before it lets go of one.
pub(crate) const HOLD: Duration = Duration::from_millis(5);

/// The statement that holds the read transaction: any table with a row
/// would do, and the schema always has one.
const SQL: &CStr = c"SELECT 1 FROM sqlite_schema";

/// A read transaction of the writer's connection, kept between commits.
///
/// It must be dropped before its connection (a connection with a statement
/// left unfinalized does not close).
pub(crate) struct Snapshot {
    /// Prepared on the writer's connection.
    stmt: NonNull<ffi::sqlite3_stmt>,
    /// Since when it holds a read transaction (`None`: it does not).
    since: Option<Instant>,
    /// How long the writer keeps one ([`HOLD`]).
    hold: Duration,
}

// SAFETY: the statement is only used with its connection, which is `Send`,
// and only through `&mut Snapshot`, which the connection's owner (the
// `Writer`) holds beside it.
unsafe impl Send for Snapshot {}

impl Snapshot {
    /// Prepare the statement on `conn`, for snapshots kept for `hold` at
    /// most. It holds nothing yet.
    pub(crate) fn new(conn: &Connection, hold: Duration) -> rusqlite::Result<Snapshot> {
        let mut stmt = ptr::null_mut();
        // SAFETY: `conn.handle()` is a valid, open connection for this call;
        // `SQL` is NUL-terminated and `-1` says so.
        let rc =
            unsafe { ffi::sqlite3_prepare_v2(conn.handle(), SQL.as_ptr(), -1, &mut stmt, ptr::null_mut()) };
        match NonNull::new(stmt) {
            Some(stmt) if rc == ffi::SQLITE_OK => Ok(Snapshot {
                stmt,
                since: None,
                hold,
            }),
            _ => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)),
        }
    }

    /// Whether it holds a read transaction.
    pub(crate) fn is_held(&self) -> bool {
        self.since.is_some()
    }

    /// Whether it has held one for its `hold` or longer: the writer then
    /// takes a new one.
    pub(crate) fn is_old(&self) -> bool {
        self.since.is_some_and(|since| since.elapsed() >= self.hold)
    }

    /// Hold the connection's read transaction: called inside a transaction,
    /// it keeps it open (as a read) past the `COMMIT`.
    pub(crate) fn hold(&mut self) {
        if self.is_held() {
            return;
        }
        // SAFETY: the statement is valid until `drop` finalizes it.
        let rc: c_int = unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) };
        if rc == ffi::SQLITE_ROW {
            self.since = Some(Instant::now());
        } else {
            // Nothing is held; the next commit tries again.
            self.release();
        }
    }

    /// End the read transaction (once no other statement and no
    /// transaction keeps it open).
    pub(crate) fn release(&mut self) {
        self.since = None;
        // SAFETY: as in `hold`. Its result repeats the last step's, which
        // `hold` has handled.
        unsafe { ffi::sqlite3_reset(self.stmt.as_ptr()) };
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // SAFETY: as in `hold`; the statement is not used again.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}
