//! What the twin → asset mapping lets in, held to IoT Hub's documented numbers rather than
//! to the constants of mapping.rs (a test written with `MAX_TAGS_BYTES` passes whatever
//! the constant says): tags of exactly 8 KB of compact JSON are imported, one byte more is
//! refused; the refusal reasons an operator reads; an empty model id is no attribute; and
//! which attribute each way of reading cannot see.

use iothub_client::Twin;
use iothubgdr_import::mapping::{check_twin, device_asset, map_page, TwinRefusal, TwinSource};
use serde_json::json;

fn twin(value: serde_json::Value) -> Twin {
    serde_json::from_value(value).expect("twin")
}

/// A twin whose tags are `{"t":"xx…x"}`: 8 bytes of compact JSON around `n` characters.
fn twin_with_tags_of(bytes: usize) -> Twin {
    let text = "x".repeat(bytes - r#"{"t":""}"#.len());
    let tags = json!({ "t": text });
    assert_eq!(serde_json::to_string(&tags).expect("json").len(), bytes);
    twin(json!({"deviceId": "d", "tags": tags}))
}

#[test]
fn tags_of_exactly_8_kb_are_imported_and_one_byte_more_is_refused() {
    assert_eq!(check_twin(&twin_with_tags_of(8192)), Ok(()));
    assert_eq!(
        check_twin(&twin_with_tags_of(8193)),
        Err(TwinRefusal::TagsTooLarge)
    );
    // Small tags are far from any limit.
    assert_eq!(check_twin(&twin_with_tags_of(20)), Ok(()));
}

#[test]
fn facts_of_exactly_1024_characters_are_imported_and_one_more_is_refused() {
    let with = |len: usize| twin(json!({"deviceId": "d", "deviceScope": "s".repeat(len)}));
    assert_eq!(check_twin(&with(1024)), Ok(()));
    assert_eq!(
        check_twin(&with(1025)),
        Err(TwinRefusal::FactTooLong("deviceScope"))
    );
}

#[test]
fn device_ids_of_exactly_128_characters_are_imported_and_one_more_is_refused() {
    let with = |len: usize| twin(json!({"deviceId": "a".repeat(len)}));
    assert_eq!(check_twin(&with(1)), Ok(()));
    assert_eq!(check_twin(&with(128)), Ok(()));
    assert_eq!(check_twin(&with(129)), Err(TwinRefusal::DeviceIdTooLong));
}

#[test]
fn refusal_reasons_say_which_limit_without_quoting_the_twin() {
    let reasons = [
        (TwinRefusal::DeviceIdEmpty, "the device id is empty"),
        (
            TwinRefusal::DeviceIdTooLong,
            "the device id is longer than IoT Hub's 128 characters",
        ),
        (
            TwinRefusal::DeviceIdCharacters,
            "the device id has characters IoT Hub does not allow",
        ),
        (
            TwinRefusal::TagsTooLarge,
            "the tags are larger than IoT Hub's 8 KB",
        ),
        (
            TwinRefusal::FactTooLong("modelId"),
            "modelId is longer than 1024 characters",
        ),
    ];
    for (reason, text) in reasons {
        assert_eq!(reason.to_string(), text);
    }
}

#[test]
fn a_page_counts_every_refused_twin() {
    let twins: Vec<Twin> = (0..5)
        .map(|i| twin(json!({"deviceId": if i % 2 == 0 { "bad id" } else { "ok" }})))
        .collect();
    let mut told = 0;
    let page = map_page(
        "h.azure-devices.net",
        &twins,
        None,
        TwinSource::Query,
        |_, _| told += 1,
    );
    assert_eq!(page.refused, 3);
    assert_eq!(told, 3);
    assert_eq!(page.assets.len(), 2);
}

#[test]
fn an_empty_model_id_is_no_attribute() {
    let asset = |model: &str| {
        device_asset(
            "h.azure-devices.net",
            &twin(json!({"deviceId": "d", "modelId": model})),
            None,
            TwinSource::Query,
        )
    };
    assert!(!asset("").attributes().contains_key("iothub_model_id"));
    assert_eq!(
        asset("dtmi:acme:pump;1").attributes()["iothub_model_id"],
        "dtmi:acme:pump;1"
    );
}

#[test]
fn each_way_of_reading_names_the_attribute_it_cannot_see() {
    let t = twin(json!({"deviceId": "d"}));
    let unknown = |source| {
        device_asset("h.azure-devices.net", &t, None, source)
            .observation
            .unknown_attributes
    };
    assert_eq!(unknown(TwinSource::Query), ["iothub_generation_id"]);
    assert_eq!(unknown(TwinSource::Export), ["iothub_model_id"]);
}
