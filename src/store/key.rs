//! Execution ids and the row keys they carry.
//!
//! An execution's row is stored under an integer key (the table's rowid)
//! that is computed from its id, so the table needs no index on the id: a
//! lookup goes straight to the row and checks the id there. Every commit
//! then writes one b-tree instead of two; the id's index used to be half of
//! the WAL.
//!
//! [`new_execution_id`] makes ids that carry their key: UUIDv7 (RFC 9562),
//! whose 48-bit millisecond timestamp is followed by a 15-bit counter that
//! starts at 0 each millisecond (in `rand_a` and the first 3 bits of
//! `rand_b`); the remaining 59 bits are random. The key is the timestamp and
//! the counter, `ms << 15 | counter`: unique and increasing within the
//! process, so new rows are appended at the end of the table. Past 32,768
//! ids in one millisecond the counter carries into the timestamp (the ids
//! run a little ahead of the clock); a clock that goes back does not make
//! keys go back.
//!
//! Any UUIDv7 yields a key ([`key_of`]); an id that yields none (another
//! format) or whose key another execution holds is stored under a negative
//! key, found through a partial index on the id of those rows only (see
//! `sql.rs`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The keys of the process's ids, shared by every store of the process.
static KEYS: KeyClock = KeyClock(AtomicI64::new(0));

/// Hands out increasing keys: holds the last key handed out (or seen).
struct KeyClock(AtomicI64);

/// Bits of the per-millisecond counter.
const COUNTER_BITS: u32 = 15;

/// A new execution id: a UUIDv7 in its hyphenated form, carrying a key that
/// no id made earlier in this process carries, nor any row of a store it
/// opened.
pub fn new_execution_id() -> String {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX >> COUNTER_BITS)
    });
    id_with_key(KEYS.next(now_ms), uuid::Uuid::new_v4().into_bytes()).to_string()
}

/// Make sure every key handed out from now on is above `key` (the largest a
/// store holds), whatever the clock says.
pub(crate) fn observe_key(key: i64) {
    KEYS.observe(key);
}

impl KeyClock {
    /// The next key: past the last one, and no earlier than `now_ms`'s first.
    fn next(&self, now_ms: i64) -> i64 {
        let floor = now_ms.clamp(0, (1 << 48) - 1) << COUNTER_BITS;
        let previous = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(floor.max(last.saturating_add(1)))
            })
            .unwrap_or_else(|last| last);
        floor.max(previous.saturating_add(1))
    }

    fn observe(&self, key: i64) {
        self.0.fetch_max(key, Ordering::Relaxed);
    }
}

/// The UUIDv7 carrying `key`, its other bits taken from `random`.
pub(crate) fn id_with_key(key: i64, random: [u8; 16]) -> uuid::Uuid {
    // `key` is positive and below 2^63: 48 bits of time, 15 of counter.
    let key = key as u64;
    let ms = key >> COUNTER_BITS;
    let counter = key & ((1 << COUNTER_BITS) - 1);
    let mut bytes = random;
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    // Version 7, then the counter's first 12 bits (`rand_a`).
    let rand_a = 0x7000 | (counter >> 3) as u16;
    bytes[6..8].copy_from_slice(&rand_a.to_be_bytes());
    // The RFC variant (`10`), the counter's last 3 bits, 3 random bits.
    bytes[8] = 0x80 | ((counter & 0b111) as u8) << 3 | (random[8] & 0b111);
    uuid::Uuid::from_bytes(bytes)
}

/// The key a UUIDv7 carries: its timestamp and the 15 bits after it. `None`
/// for anything else (not a UUID, another version, a key of 0).
pub(crate) fn key_of(execution_id: &str) -> Option<i64> {
    key_of_uuid(&uuid::Uuid::try_parse(execution_id).ok()?)
}

/// [`key_of`] an id already parsed.
pub(crate) fn key_of_uuid(id: &uuid::Uuid) -> Option<i64> {
    if id.get_version_num() != 7 || id.get_variant() != uuid::Variant::RFC4122 {
        return None;
    }
    let bytes = id.as_bytes();
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&bytes[..6]);
    let ms = u64::from_be_bytes(ms);
    let rand_a = u64::from(u16::from_be_bytes([bytes[6], bytes[7]]) & 0x0fff);
    let counter = rand_a << 3 | u64::from(bytes[8] >> 3 & 0b111);
    let key = i64::try_from(ms << COUNTER_BITS | counter).ok()?;
    (key > 0).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> KeyClock {
        KeyClock(AtomicI64::new(0))
    }

    #[test]
    fn an_id_carries_its_key_and_is_a_uuid_v7_with_its_time() {
        let key = clock().next(1_700_000_000_123) + 12_345;
        let id = id_with_key(key, [0xff; 16]);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert_eq!(
            secs * 1000 + u64::from(nanos / 1_000_000),
            (key >> COUNTER_BITS) as u64
        );
        assert_eq!(key_of(&id.to_string()), Some(key));
        assert_eq!(key_of(&id.to_string().to_uppercase()), Some(key));
    }

    #[test]
    fn keys_increase_within_a_millisecond_and_when_the_clock_goes_back() {
        let keys = clock();
        let first = keys.next(1_800_000_000_000);
        assert_eq!(
            first,
            1_800_000_000_000 << COUNTER_BITS,
            "a millisecond starts at 0"
        );
        let second = keys.next(1_800_000_000_000);
        let after_going_back = keys.next(1_000);
        assert_eq!(second - first, 1, "the counter counts within the millisecond");
        assert_eq!(after_going_back - second, 1);
        let later = keys.next(1_900_000_000_000);
        assert_eq!(
            later,
            1_900_000_000_000 << COUNTER_BITS,
            "a new millisecond starts at 0"
        );
        // Past 2^15 ids in one millisecond the counter carries into the time.
        let last = (0..1 << COUNTER_BITS)
            .map(|_| keys.next(1_900_000_000_000))
            .last();
        assert_eq!(last, Some(1_900_000_000_001 << COUNTER_BITS));
        let id = id_with_key(keys.next(1_900_000_000_000), [0; 16]).to_string();
        assert_eq!(key_of(&id), Some((1_900_000_000_001 << COUNTER_BITS) + 1));
    }

    #[test]
    fn observed_keys_are_never_handed_out_again() {
        let keys = clock();
        let far = 2_000_000_000_000 << COUNTER_BITS;
        keys.observe(far);
        assert_eq!(keys.next(1_000), far + 1);
    }

    #[test]
    fn other_ids_carry_no_key() {
        assert_eq!(key_of("one"), None);
        assert_eq!(key_of(&uuid::Uuid::new_v4().to_string()), None);
        assert_eq!(key_of("00000000-0000-7000-8000-000000000000"), None);
        // Another generator's UUIDv7 carries a key too (its random bits).
        assert!(key_of(&uuid::Uuid::now_v7().to_string()).is_some());
    }

    #[test]
    fn new_ids_from_many_threads_carry_distinct_increasing_keys() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..20_000)
                        .map(|_| key_of(&new_execution_id()).expect("ours carry a key"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for thread in threads {
            let keys = thread.join().expect("no panic");
            assert!(
                keys.windows(2).all(|w| w[0] < w[1]),
                "each thread's keys increase"
            );
            all.extend(keys);
        }
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "no key handed out twice");
    }
}
