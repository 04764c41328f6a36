//! Small schema transforms shared by the wire types.

use schemars::Schema;

/// Turn a `oneOf` into an `anyOf`.
///
/// For unions whose members may overlap on purpose: an error code's open tail
/// (any string) overlaps the known codes, and formats 1 and 2 of an execute
/// request share their fields. `oneOf` would reject a value that two members
/// accept; the decoder accepts it.
pub fn any_of(schema: &mut Schema) {
    if let Some(one_of) = schema.remove("oneOf") {
        schema.insert("anyOf".into(), one_of);
    }
}
