//! The writer's VFS: the WAL frames of one commit reach the file in one write.
//!
//! SQLite appends each WAL frame as two writes, its 24-byte header and then
//! its page: a commit of 6 pages is 12 `pwrite`s, each a system call and a
//! pass through the file system's write path. [`NAME`] is the default VFS
//! with one change: a WAL file opened through it gathers consecutive
//! header-and-page pairs in a buffer and writes them with one call when the
//! commit's last frame (the one whose header carries the database size) is
//! complete. Only the writer's connection uses it.
//!
//! Nothing that is read is ever in the buffer:
//! - the last frame of a commit flushes it, and SQLite publishes a commit to
//!   other connections (the wal-index header) only after writing that frame;
//! - every other call on the file (read, sync, truncate, size, file control,
//!   close) flushes first, so this connection reads what it wrote and syncs
//!   it;
//! - any write that is not the next header or page in sequence (the WAL
//!   header, a frame overwritten in place, a checksum rewritten, part of a
//!   frame) flushes the buffer and goes straight to the file.
//!
//! A commit's write ends on a page of the kernel's page cache ([`PAGE`]):
//! its last frame is followed by zeros up to the next multiple of 4 KiB. A
//! write that ends inside a page the cache no longer holds (the WAL is used
//! again from its start after a restart, and idle pages get reclaimed) makes
//! the kernel read that page from the disk first, with the writer's lock
//! held; a page written whole needs no read. Nothing after a commit's last
//! frame is ever read as a frame: the next commit writes over it, and a
//! recovery stops at the first frame whose salts and checksum do not follow
//! (zeros never do, as stale frames of an earlier pass never do).
//!
//! A failed write of the buffer fails the call that flushed it, before the
//! commit it belongs to is published. The database file, the journal and
//! the shared memory are the default VFS's own files, untouched.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::mem::size_of;
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The VFS's name, for `Connection::open_with_flags_and_vfs`.
pub(crate) const NAME: &CStr = c"agentwire-wal";

/// The size of a WAL frame header.
const FRAME_HEADER: usize = 24;

/// The kernel's page (x86-64's, and most arm64 kernels'): a commit's write
/// is padded to end on one.
const PAGE: u64 = 4096;

/// The most the buffer holds: a large transaction's frames are written out
/// before its commit ends. The default VFS writes at most 128 KiB at once.
const MAX_BUFFER: usize = 64 << 10;

/// Register the VFS (once); fails unless SQLite's default VFS is unix's.
pub(crate) fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find` initializes SQLite and returns the
            // default VFS, which lives as long as the process (it is never
            // unregistered). The copy is leaked: SQLite keeps a pointer to it.
            unsafe {
                let real = ffi::sqlite3_vfs_find(ptr::null());
                if real.is_null() {
                    return Err("SQLite has no default VFS".to_owned());
                }
                // Every other method is the default VFS's own: they take the
                // VFS as an argument, and the unix VFS's read nothing from it
                // but `mxPathname`, copied here. Others (Windows') may.
                let name = CStr::from_ptr((*real).zName);
                if !name.to_bytes().starts_with(b"unix") {
                    return Err(format!("the default VFS is {name:?}, not unix"));
                }
                let mut vfs = ptr::read(real);
                vfs.szOsFile = c_int::try_from(REAL_OFFSET).map_err(|e| e.to_string())? + (*real).szOsFile;
                vfs.pNext = ptr::null_mut();
                vfs.zName = NAME.as_ptr();
                vfs.pAppData = real.cast();
                vfs.xOpen = Some(open);
                let vfs = Box::leak(Box::new(vfs));
                match ffi::sqlite3_vfs_register(vfs, 0) {
                    ffi::SQLITE_OK => Ok(()),
                    rc => Err(format!("cannot register the WAL VFS (SQLite error {rc})")),
                }
            }
        })
        .clone()
}

/// A WAL file: the default VFS's file, and the writes not made yet.
#[repr(C)]
struct WalFile {
    /// SQLite's part: the methods below.
    base: ffi::sqlite3_file,
    /// The default VFS's file, in the same allocation, at [`REAL_OFFSET`].
    real: *mut ffi::sqlite3_file,
    /// Consecutive writes, not made yet, starting at `start`.
    pending: Vec<u8>,
    start: i64,
    /// Where the last write through this file ended (`-1`: none yet).
    end: i64,
    /// What the buffer ends with.
    last: Last,
}

/// The last write gathered in a [`WalFile`]'s buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Nothing, or a whole frame: a frame header may follow.
    Frame,
    /// A frame header; `commit` if it carries the database size (the last
    /// frame of a commit). Its page follows.
    Header { commit: bool },
}

/// Where the default VFS's file starts in the allocation SQLite makes for a
/// [`WalFile`] (rounded up to 8, SQLite's alignment).
const REAL_OFFSET: usize = size_of::<WalFile>().next_multiple_of(8);

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// `xOpen`: WAL files are wrapped, every other file is the default VFS's.
unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes this VFS (whose `pAppData` is the default VFS) and
    // an allocation of `szOsFile` bytes: `REAL_OFFSET` more than the default
    // VFS needs, so that either file fits at its offset.
    unsafe {
        let real_vfs: *mut ffi::sqlite3_vfs = (*vfs).pAppData.cast();
        let Some(real_open) = (*real_vfs).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return real_open(real_vfs, name, file, flags, out_flags);
        }
        let real = file.cast::<u8>().add(REAL_OFFSET).cast::<ffi::sqlite3_file>();
        let rc = real_open(real_vfs, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // SQLite closes only what `pMethods` says was opened.
            if let Some(real_close) = (*real).pMethods.as_ref().and_then(|m| m.xClose) {
                real_close(real);
            }
            (*file).pMethods = ptr::null();
            return rc;
        }
        ptr::write(
            file.cast::<WalFile>(),
            WalFile {
                base: ffi::sqlite3_file { pMethods: &METHODS },
                real,
                pending: Vec::new(),
                start: 0,
                end: -1,
                last: Last::Frame,
            },
        );
        ffi::SQLITE_OK
    }
}

/// The [`WalFile`] SQLite calls a method on, and its default VFS's methods.
///
/// # Safety
/// `file` must be a file opened by [`open`] with `METHODS`.
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> (&'a mut WalFile, &'a ffi::sqlite3_io_methods) {
    // SAFETY: the caller's contract; the default VFS set `pMethods` when it
    // opened `real` (or `open` would have failed).
    unsafe {
        let wal = &mut *file.cast::<WalFile>();
        let methods = &*(*wal.real).pMethods;
        (wal, methods)
    }
}

impl WalFile {
    /// Write the buffer to the file.
    ///
    /// # Safety
    /// `methods` must be `real`'s.
    unsafe fn flush(&mut self, methods: &ffi::sqlite3_io_methods) -> c_int {
        self.last = Last::Frame;
        if self.pending.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Ok(amount) = c_int::try_from(self.pending.len()) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        // SAFETY: the caller's contract; the buffer is `amount` bytes long.
        let rc = unsafe { self.write_real(methods, self.pending.as_ptr().cast(), amount, self.start) };
        self.pending.clear();
        rc
    }

    /// Zeros after the buffer up to the next [`PAGE`] boundary of the file.
    /// Only for a commit's buffer: its last frame is the WAL's last.
    fn pad_to_page(&mut self) {
        let end = u64::try_from(self.start).unwrap_or(0) + self.pending.len() as u64;
        let pad = end.next_multiple_of(PAGE) - end;
        self.pending.resize(self.pending.len() + pad as usize, 0);
    }

    /// Write `amount` bytes at `data` to the file, now.
    ///
    /// # Safety
    /// `methods` must be `real`'s; `amount` bytes must be readable at `data`.
    unsafe fn write_real(
        &self,
        methods: &ffi::sqlite3_io_methods,
        data: *const c_void,
        amount: c_int,
        offset: i64,
    ) -> c_int {
        #[cfg(test)]
        tests::REAL_WRITES.with(|n| n.set(n.get() + 1));
        match methods.xWrite {
            // SAFETY: the caller's contract.
            Some(real_write) => unsafe { real_write(self.real, data, amount, offset) },
            None => ffi::SQLITE_IOERR_WRITE,
        }
    }
}

/// Flush, then run `call` on the default VFS's file.
///
/// # Safety
/// `file` must be a file opened by [`open`].
unsafe fn flushed(
    file: *mut ffi::sqlite3_file,
    call: impl FnOnce(&ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) -> Option<c_int>,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        let (wal, methods) = wal(file);
        match wal.flush(methods) {
            ffi::SQLITE_OK => call(methods, wal.real).unwrap_or(ffi::SQLITE_MISUSE),
            rc => rc,
        }
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls this on a file opened by `open`, with `amount`
    // readable bytes at `data`.
    unsafe {
        let (wal, methods) = wal(file);
        let len = usize::try_from(amount).unwrap_or(0);
        let bytes: &[u8] = if len == 0 || data.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(data.cast::<u8>(), len)
        };
        // The buffer, when not empty, ends where the last write did.
        let in_sequence = offset == wal.end;
        let next = match wal.last {
            Last::Frame if bytes.len() == FRAME_HEADER => Some(Last::Header {
                commit: bytes[4..8] != [0; 4],
            }),
            Last::Header { .. } if bytes.len() >= 512 && bytes.len().is_power_of_two() => Some(Last::Frame),
            _ => None,
        };
        wal.end = offset + i64::from(amount);
        match next {
            Some(next) if in_sequence => {
                let commit_done = wal.last == Last::Header { commit: true };
                if wal.pending.len() + bytes.len() > MAX_BUFFER {
                    let rc = wal.flush(methods);
                    if rc != ffi::SQLITE_OK {
                        return rc;
                    }
                }
                if wal.pending.is_empty() {
                    wal.start = offset;
                }
                wal.pending.extend_from_slice(bytes);
                wal.last = next;
                if commit_done {
                    wal.pad_to_page();
                    return wal.flush(methods);
                }
                ffi::SQLITE_OK
            }
            _ => match wal.flush(methods) {
                ffi::SQLITE_OK => wal.write_real(methods, data, amount, offset),
                rc => rc,
            },
        }
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this once, on a file opened by `open`; nothing
    // uses the file after it.
    unsafe {
        let (wal, methods) = wal(file);
        let flushed = wal.flush(methods);
        let closed = methods
            .xClose
            .map_or(ffi::SQLITE_OK, |real_close| real_close(wal.real));
        ptr::drop_in_place(file.cast::<WalFile>());
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls this on a file opened by `open`.
    unsafe { flushed(file, |m, real| m.xRead.map(|f| f(real, data, amount, offset))) }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: as `read`.
    unsafe { flushed(file, |m, real| m.xTruncate.map(|f| f(real, size))) }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: as `read`.
    unsafe { flushed(file, |m, real| m.xSync.map(|f| f(real, flags))) }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: as `read`.
    unsafe { flushed(file, |m, real| m.xFileSize.map(|f| f(real, size))) }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: as `read`.
    unsafe { flushed(file, |m, real| m.xLock.map(|f| f(real, level))) }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: as `read`.
    unsafe { flushed(file, |m, real| m.xUnlock.map(|f| f(real, level))) }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: as `read`.
    unsafe { flushed(file, |m, real| m.xCheckReservedLock.map(|f| f(real, out))) }
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: as `read`.
    unsafe {
        flushed(file, |m, real| {
            Some(m.xFileControl.map_or(ffi::SQLITE_NOTFOUND, |f| f(real, op, arg)))
        })
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: as `read`; nothing is written.
    unsafe {
        let (wal, methods) = wal(file);
        methods.xSectorSize.map_or(0, |f| f(wal.real))
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: as `read`; nothing is written.
    unsafe {
        let (wal, methods) = wal(file);
        methods.xDeviceCharacteristics.map_or(0, |f| f(wal.real))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::Cell;

    use rusqlite::{Connection, OpenFlags};

    use super::*;

    thread_local! {
        /// Writes made to WAL files by this thread.
        pub(in crate::store) static REAL_WRITES: Cell<usize> = const { Cell::new(0) };
    }

    /// A database in WAL mode with 1 KiB pages, written through the VFS, and
    /// a table of rows.
    fn writer(path: &std::path::Path, synchronous: &str) -> Connection {
        register().unwrap();
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE rows (id INTEGER PRIMARY KEY, data TEXT NOT NULL);"
        ))
        .unwrap();
        conn
    }

    fn insert(conn: &Connection, rows: usize, size: usize) {
        let tx = conn.unchecked_transaction().unwrap();
        for _ in 0..rows {
            tx.execute("INSERT INTO rows (data) VALUES (?1)", [&"x".repeat(size)])
                .unwrap();
        }
        tx.commit().unwrap();
    }

    /// How many rows, and how many bytes in them, a connection sees.
    fn contents(conn: &Connection) -> (i64, i64) {
        conn.query_row(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM rows",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
    }

    /// What a process opening the files left now would find: a copy of the
    /// database and its WAL (no wal-index), so that SQLite recovers from the
    /// WAL alone and checks every frame's checksum.
    fn recovered(dir: &std::path::Path) -> (i64, i64) {
        let copy = dir.join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        for name in ["db", "db-wal"] {
            std::fs::copy(dir.join(name), copy.join(name)).unwrap();
        }
        let conn = Connection::open(copy.join("db")).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        contents(&conn)
    }

    #[test]
    fn a_commit_of_many_pages_reaches_the_wal_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer(&dir.path().join("db"), "NORMAL");
        insert(&conn, 1, 10);
        REAL_WRITES.with(|n| n.set(0));
        // 20 rows of 300 bytes: 6 or more pages, 12 or more writes without the VFS.
        insert(&conn, 20, 300);
        assert_eq!(REAL_WRITES.with(Cell::get), 1);
        insert(&conn, 1, 10);
        assert_eq!(REAL_WRITES.with(Cell::get), 2);
    }

    #[test]
    fn a_commit_ends_on_a_page_and_what_follows_it_is_never_read_as_a_frame() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer(&dir.path().join("db"), "NORMAL");
        let reader = Connection::open(dir.path().join("db")).unwrap();
        let wal_len = || std::fs::metadata(dir.path().join("db-wal")).unwrap().len();
        let mut expected = (0, 0);
        // Two passes over the WAL: the second writes over the first's frames
        // and padding, and each commit ends inside what the first wrote.
        for pass in 0..2 {
            for i in 1..=12 {
                insert(&conn, i, 150);
                expected = (expected.0 + i as i64, expected.1 + 150 * i as i64);
                if pass == 0 {
                    assert_eq!(wal_len() % PAGE, 0, "the WAL's end after commit {i}");
                }
                assert_eq!(contents(&reader), expected, "pass {pass}, commit {i}");
                assert_eq!(recovered(dir.path()), expected, "pass {pass}, commit {i}");
            }
            reader.execute_batch("PRAGMA wal_checkpoint(RESTART)").unwrap();
        }
    }

    #[test]
    fn every_commit_is_in_the_file_when_other_connections_see_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer(&dir.path().join("db"), "NORMAL");
        let reader = Connection::open(dir.path().join("db")).unwrap();
        for i in 1..=50 {
            insert(&conn, 1, 100 * i);
            let expected = (i as i64, (1..=i as i64).map(|i| 100 * i).sum());
            assert_eq!(contents(&reader), expected, "after commit {i}");
            if i % 20 == 0 {
                // The next commit starts the WAL over: its header, then frames.
                reader.execute_batch("PRAGMA wal_checkpoint(RESTART)").unwrap();
            }
        }
        assert_eq!(recovered(dir.path()), (50, 127_500));
    }

    #[test]
    fn a_transaction_larger_than_the_buffer_and_the_page_cache_survives_whole() {
        for synchronous in ["NORMAL", "FULL"] {
            let dir = tempfile::tempdir().unwrap();
            let conn = writer(&dir.path().join("db"), synchronous);
            // 16 pages of cache: the transaction spills frames to the WAL
            // before its commit, and writes some pages again in place.
            conn.execute_batch("PRAGMA cache_size = 16").unwrap();
            insert(&conn, 3, 100);
            let tx = conn.unchecked_transaction().unwrap();
            for i in 0..3000 {
                tx.execute("INSERT INTO rows (data) VALUES (?1)", [&"y".repeat(500)])
                    .unwrap();
                if i % 10 == 0 {
                    tx.execute("UPDATE rows SET data = data || 'z' WHERE id <= 3", [])
                        .unwrap();
                }
            }
            tx.commit().unwrap();
            let expected = (3003, 3000 * 500 + 3 * (100 + 300));
            let reader = Connection::open(dir.path().join("db")).unwrap();
            assert_eq!(contents(&reader), expected, "synchronous = {synchronous}");
            assert_eq!(recovered(dir.path()), expected, "synchronous = {synchronous}");
        }
    }
}
