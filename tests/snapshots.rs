//! Snapshots of the canonical wire JSON of every message variant, in the order
//! the encoder writes it: a change to any encoding shows up as a reviewed
//! snapshot diff.

use agentwire::codegen::examples;

#[test]
fn canonical_json_of_every_message() {
    let mut seen = 0;
    for example in examples().into_iter().filter(|e| e.source == "types") {
        insta::assert_snapshot!(format!("{}__{}", example.message, example.name), example.json);
        seen += 1;
    }
    assert!(seen >= 40, "only {seen} examples built from the types");
}
