//! Arbitrary input into the parsers: always a value or an error, never a panic.

use iothub_client::{decode_device_count, decode_twin_page, ConnectionString};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn connection_string_parse_never_panics(input in any::<String>()) {
        let _ = ConnectionString::parse(&input);
    }

    #[test]
    fn connection_string_like_input_never_panics(
        parts in proptest::collection::vec(
            (
                prop_oneof![
                    Just("HostName".to_owned()), Just("Endpoint".to_owned()),
                    Just("SharedAccessKeyName".to_owned()), Just("SharedAccessKey".to_owned()),
                    Just("EntityPath".to_owned()), Just("DeviceId".to_owned()), ".{0,8}",
                ],
                ".{0,40}",
            ),
            0..7,
        )
    ) {
        let input: Vec<String> = parts.iter().map(|(name, value)| format!("{name}={value}")).collect();
        let input = input.join(";");
        if let Err(error) = ConnectionString::parse(&input) {
            // The reason never echoes what was given.
            for (_, value) in &parts {
                if value.len() >= 12 {
                    prop_assert!(!error.to_string().contains(value.as_str()));
                }
            }
        }
    }

    #[test]
    fn page_decoder_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_twin_page(&body);
        let _ = decode_device_count(&body);
    }

    #[test]
    fn page_decoder_never_panics_on_json_like_text(
        body in r#"\[(\{("deviceId"|"tags"|"version"|"capabilities"|"properties"|"x")?:?("a"|1|-1|null|true|\{"iotEdge":(true|1)\}|\[\])?,?\}?,?){0,4}\]?"#
    ) {
        let _ = decode_twin_page(body.as_bytes());
        let _ = decode_device_count(body.as_bytes());
    }
}
