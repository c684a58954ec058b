//! "Not set" is one rule for the `=*` / `!=*` filters and for the events an import records:
//! an attribute that is absent, null or `""` is not set. A stored null that a source no
//! longer sends is therefore no change: blanking it would record an event (and a write)
//! for a device that did not change.

use iothubgdr_store::history::{changed_attributes, is_unset};
use iothubgdr_store::Attributes;
use serde_json::{json, Value};

fn attrs(value: Value) -> Attributes {
    value.as_object().cloned().unwrap_or_default()
}

#[test]
fn null_and_empty_are_unset_and_everything_else_is_set() {
    assert!(is_unset(&Value::Null));
    assert!(is_unset(&json!("")));
    assert!(!is_unset(&json!("x")));
    assert!(!is_unset(&json!(0)));
    assert!(!is_unset(&json!(false)));
    assert!(!is_unset(&json!([])));
}

#[test]
fn a_stored_null_or_empty_value_the_source_no_longer_sends_is_no_change() {
    let old = attrs(json!({"a": null, "b": "", "c": "3", "d": 4}));
    let new = attrs(json!({}));
    assert_eq!(
        changed_attributes(&old, &new, &[]),
        attrs(json!({"c": "", "d": ""}))
    );
}
