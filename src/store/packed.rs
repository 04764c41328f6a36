//! How an execution's row packs its id and its results (schema 3).
//!
//! A file store writes every row twice: to the WAL when it commits, and
//! into the database when the WAL is copied back. Both cost in proportion
//! to the row's bytes (a 1 KiB page holds four schema-2 rows of the
//! benchmark's executions, seven packed ones), so schema 3 packs the two
//! columns that were most of a row:
//!
//! - **`execution_id`.** An id that carries its row's key (`key.rs`) and is
//!   in canonical form (hyphenated, lowercase) is stored as its last 8
//!   bytes, a BLOB: the key gives the rest. Any other id, and every id under
//!   a negative key, is stored as its text. The view `executions_readable`
//!   shows every id as text, for a person with a `sqlite3` shell.
//! - **`results`.** Still JSON: an action that returned a result is the
//!   array `[function_name, params, result]` (`params` `null` when absent)
//!   instead of an object that repeats the field names; any other action (an
//!   error, a message) stays the object the protocol sends.
//!
//! Rows written before (text ids, results as objects) are read as they are;
//! nothing is rewritten.

use rusqlite::types::{ToSqlOutput, ValueRef};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::key::{id_with_key, key_of, key_of_uuid};
use crate::protocol::ActionResult;

/// `execution_id` as `execution_by_id!` (in `sql.rs`) binds it, from one
/// parse: the key it carries (`?1`; 0, which no row has, when it carries
/// none) and its tail (`?3`): the 8 bytes the key does not give, when the id
/// carries a key and is in canonical form (`None` for any other id).
pub(crate) fn key_and_tail(execution_id: &str) -> (i64, Option<[u8; 8]>) {
    let Some((id, key)) = uuid::Uuid::try_parse(execution_id)
        .ok()
        .and_then(|id| Some((id, key_of_uuid(&id)?)))
    else {
        return (0, None);
    };
    // 36 characters parse only as the hyphenated form.
    let canonical = execution_id.len() == 36 && !execution_id.bytes().any(|b| b.is_ascii_uppercase());
    let mut tail = [0; 8];
    tail.copy_from_slice(&id.as_bytes()[8..]);
    (key, canonical.then_some(tail))
}

/// What an execution's `execution_id` column holds.
#[derive(Debug, PartialEq)]
pub(crate) enum IdColumn<'a> {
    /// The id's tail ([`key_and_tail`]), under the key the id carries.
    Tail([u8; 8]),
    /// The id's text.
    Text(&'a str),
}

impl rusqlite::ToSql for IdColumn<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            IdColumn::Tail(tail) => ValueRef::Blob(tail),
            IdColumn::Text(text) => ValueRef::Text(text.as_bytes()),
        }))
    }
}

/// The `execution_id` column of an execution whose tail ([`key_and_tail`])
/// is `tail`, stored under `key`, which is the key the id carries or a
/// negative one: its tail under its own key, its text otherwise.
pub(crate) fn id_column(execution_id: &str, tail: Option<[u8; 8]>, key: i64) -> IdColumn<'_> {
    debug_assert!(key < 0 || key_of(execution_id) == Some(key));
    match tail {
        Some(tail) if key > 0 => IdColumn::Tail(tail),
        _ => IdColumn::Text(execution_id),
    }
}

/// The id of the execution stored under `key` whose `execution_id` column
/// holds `column`: `None` when it holds neither a tail nor text.
pub(crate) fn id_from_column(key: i64, column: ValueRef<'_>) -> Option<String> {
    match column {
        ValueRef::Blob(tail) => {
            let tail: [u8; 8] = tail.try_into().ok()?;
            let mut bytes = [0; 16];
            bytes[8..].copy_from_slice(&tail);
            // `id_with_key` takes the counter's bits from the key and keeps the
            // rest of byte 8: the id this tail was taken from.
            Some(id_with_key(key, bytes).to_string())
        }
        ValueRef::Text(text) => String::from_utf8(text.to_vec()).ok(),
        _ => None,
    }
}

/// `results` as the `results` column stores them.
pub(crate) fn results_text(results: &[ActionResult]) -> serde_json::Result<String> {
    serde_json::to_string(&PackedResults(results))
}

/// The results the `results` column holds, packed or not.
pub(crate) fn results_from_text(text: &str) -> serde_json::Result<Vec<ActionResult>> {
    let stored: Vec<StoredResult> = serde_json::from_str(text)?;
    Ok(stored
        .into_iter()
        .map(|stored| match stored {
            StoredResult::Packed(function_name, params, result) => {
                ActionResult::ok(function_name, params, result)
            }
            StoredResult::Object(action) => action,
        })
        .collect())
}

/// Serializes results packed, as [`results_text`] stores them.
struct PackedResults<'a>(&'a [ActionResult]);

impl Serialize for PackedResults<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for action in self.0 {
            match action {
                ActionResult {
                    function_name,
                    params,
                    result: Some(result),
                    error: None,
                    message: None,
                } => seq.serialize_element(&(function_name, params, result))?,
                other => seq.serialize_element(other)?,
            }
        }
        seq.end()
    }
}

/// One stored action: packed, or the protocol's object.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredResult {
    Packed(String, Option<Map<String, Value>>, Value),
    Object(ActionResult),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key::new_execution_id;
    use serde_json::json;

    fn params(text: &str) -> Option<Map<String, Value>> {
        json!({ "text": text }).as_object().cloned()
    }

    #[test]
    fn results_that_returned_something_are_packed_and_read_back() {
        let results = vec![
            ActionResult::ok("echo", params("one"), json!({ "text": "one" })),
            ActionResult::ok("now", None, Value::Null),
        ];
        let text = results_text(&results).unwrap();
        assert_eq!(
            text,
            r#"[["echo",{"text":"one"},{"text":"one"}],["now",null,null]]"#
        );
        assert_eq!(results_from_text(&text).unwrap(), results);
    }

    #[test]
    fn errors_and_messages_stay_objects_and_are_read_back() {
        let results = vec![
            ActionResult::failed("fetch", params("x"), "timed out"),
            ActionResult::ok("echo", None, json!(1)).with_message("done"),
            ActionResult::ok("echo", params("two"), json!("two")),
        ];
        let text = results_text(&results).unwrap();
        assert!(text.starts_with(r#"[{"function_name":"fetch""#), "{text}");
        assert!(text.ends_with(r#"["echo",{"text":"two"},"two"]]"#), "{text}");
        assert_eq!(results_from_text(&text).unwrap(), results);
    }

    #[test]
    fn results_stored_as_objects_before_schema_3_are_read() {
        let results = vec![
            ActionResult::ok("echo", params("one"), json!({ "text": "one" })),
            ActionResult::ok("now", None, Value::Null),
        ];
        let schema_2 = serde_json::to_string(&results).unwrap();
        assert_eq!(results_from_text(&schema_2).unwrap(), results);
        assert!(results_from_text(r#"[["echo"]]"#).is_err());
    }

    #[test]
    fn a_canonical_id_is_stored_as_its_tail_under_its_key_and_read_back() {
        let id = new_execution_id();
        let key = key_of(&id).unwrap();
        let IdColumn::Tail(tail) = id_column(&id, key_and_tail(&id).1, key) else {
            panic!("{id} is stored as its tail");
        };
        assert_eq!(
            id_from_column(key, ValueRef::Blob(&tail)).as_deref(),
            Some(id.as_str())
        );
        let theirs = uuid::Uuid::now_v7().to_string();
        let tail = key_and_tail(&theirs)
            .1
            .expect("another generator's UUIDv7 is packed too");
        assert_eq!(
            id_from_column(key_of(&theirs).unwrap(), ValueRef::Blob(&tail)).as_deref(),
            Some(theirs.as_str())
        );
        // Under another key (a collision's negative key) it is its text.
        assert_eq!(id_column(&id, key_and_tail(&id).1, -1), IdColumn::Text(&id));
    }

    #[test]
    fn other_ids_are_stored_as_text() {
        let id = new_execution_id();
        let key = key_of(&id).unwrap();
        let upper = id.to_uppercase();
        for other in [upper.as_str(), "one", "550e8400-e29b-41d4-a716-446655440000"] {
            assert_eq!(key_and_tail(other).1, None, "{other}");
        }
        assert_eq!(
            id_column(&upper, key_and_tail(&upper).1, key),
            IdColumn::Text(&upper),
            "an id in upper case carries its key but is stored as its text"
        );
        let simple = id.replace('-', "");
        assert_eq!(key_and_tail(&simple).1, None, "the simple form is not canonical");
        assert_eq!(
            id_from_column(key, ValueRef::Text(upper.as_bytes())).as_deref(),
            Some(upper.as_str())
        );
        assert_eq!(id_from_column(key, ValueRef::Blob(&[1, 2, 3])), None);
    }
}
