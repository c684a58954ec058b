//! The errors of an operator's keys file name the line at fault, as the operator counts
//! lines (the first is 1, comments and blank lines count), and never its content.
//!
//! A mutation run found that the line number was never checked: `index * 1` instead of
//! `index + 1` passed every test.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use iothubgdr_auth::{parse_keys, KeyError, SigningKey};

#[test]
fn a_bad_line_is_named_by_its_number_in_the_file() {
    let good = SigningKey::generate();
    // Line 1 is the good key, line 2 a comment, line 3 blank, line 4 the bad one.
    let text = format!("{}\n# rotated 2026-11\n\nno-key-here\n", *good.to_line());
    let err = parse_keys(&text).unwrap_err();
    assert_eq!(err, KeyError::BadLine(4));
    assert_eq!(
        err.to_string(),
        "line 4 of the keys is not `<kid> <base64 key>`"
    );
    // The first line is line 1, not line 0.
    assert_eq!(
        parse_keys("no-key-here").map(|keys| keys.len()),
        Err(KeyError::BadLine(1))
    );
}

#[test]
fn a_key_that_is_no_base64_is_named_by_its_line_and_not_shown() {
    let good = SigningKey::generate();
    let text = format!("{}\nk2 not*base64*at*all\n", *good.to_line());
    let err = parse_keys(&text).unwrap_err();
    assert_eq!(err, KeyError::BadLine(2));
    assert!(!err.to_string().contains("not*base64"), "{err}");
}

#[test]
fn the_shortest_key_is_accepted_and_one_byte_less_is_refused() {
    let shortest = STANDARD.encode([9u8; iothubgdr_auth::MIN_KEY_BYTES]);
    let keys = parse_keys(&format!("k1 {shortest}")).unwrap();
    assert_eq!(keys[0].as_bytes().len(), iothubgdr_auth::MIN_KEY_BYTES);
    let short = STANDARD.encode(vec![9u8; iothubgdr_auth::MIN_KEY_BYTES - 1]);
    assert_eq!(
        parse_keys(&format!("k1 {short}")).map(|keys| keys.len()),
        Err(KeyError::TooShort)
    );
}
