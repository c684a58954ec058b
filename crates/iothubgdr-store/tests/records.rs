//! Rules of the store's plain records that the backends' conformance suite does not reach:
//! which import states are final (a cancel of a done import stops nothing, and the API
//! marks the operation done), and a signing key's `Debug`, which names the key by its id
//! and never shows its bytes.

use iothubgdr_store::{ImportStatus, StoredSigningKey};
use time::OffsetDateTime;

#[test]
fn finished_cancelled_and_failed_imports_are_done_and_no_other() {
    let all = [
        (ImportStatus::Pending, false),
        (ImportStatus::InProgress, false),
        (ImportStatus::Finished, true),
        (ImportStatus::Cancelled, true),
        (ImportStatus::Failed, true),
    ];
    for (status, done) in all {
        assert_eq!(status.is_done(), done, "{status:?}");
        assert_eq!(ImportStatus::parse(status.as_str()), Some(status));
    }
    assert_eq!(ImportStatus::parse("finished"), None);
}

#[test]
fn a_signing_keys_debug_names_its_id_and_never_its_bytes() {
    let key = StoredSigningKey {
        kid: "kid-2026-11".into(),
        key: b"0123456789abcdef-signing-key-bytes".to_vec(),
        created_at: OffsetDateTime::UNIX_EPOCH,
        retired_at: None,
    };
    for text in [format!("{key:?}"), format!("{key:#?}")] {
        assert!(text.contains("kid-2026-11"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        assert!(!text.contains("signing-key-bytes"), "{text}");
        // Nor as the byte list `Vec<u8>`'s own Debug would print.
        assert!(!text.contains("48, 49, 50"), "{text}");
        assert!(!text.contains("48,\n"), "{text}");
    }
}
