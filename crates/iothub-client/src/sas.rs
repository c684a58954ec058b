//! Shared access signature tokens, as the IoT Hub security documentation defines them
//! (<https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas>):
//! `SharedAccessSignature sr={URL-encoded resourceURI}&sig={signature}&se={expiry}&skn={policyName}`
//! where the signature is the URL-encoded base64 HMAC-SHA256, under the decoded key, of
//! `{URL-encoded resourceURI} + "\n" + expiry`.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use zeroize::Zeroizing;

/// What Python's `urllib.parse.quote_plus` leaves alone, which the official Python SDK
/// uses for the resource URI: letters, digits and `_.-~`.
const RESOURCE_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// What Python's `urllib.parse.quote` leaves alone (it also keeps `/`), which the official
/// Python SDK uses for the signature; matching it byte for byte makes the token
/// comparable with the SDK's. The hub URL-decodes either way.
const SIGNATURE_ENCODE: &AsciiSet = &RESOURCE_ENCODE.remove(b'/');

/// Builds a SAS token for `resource_uri` (for the service API: the hub host name) that
/// expires at `expiry_unix_secs`. `policy_name` is the shared access policy (`skn`);
/// without it the token is a device-style token.
pub fn generate_sas_token(
    resource_uri: &str,
    key: &[u8],
    policy_name: Option<&str>,
    expiry_unix_secs: u64,
) -> String {
    let encoded_uri =
        utf8_percent_encode(&resource_uri.to_lowercase(), RESOURCE_ENCODE).to_string();
    let string_to_sign = format!("{encoded_uri}\n{expiry_unix_secs}");
    // HMAC accepts keys of any length, so this cannot fail; an empty key is still a key.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(string_to_sign.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let signature = utf8_percent_encode(&signature, SIGNATURE_ENCODE);
    match policy_name {
        Some(policy) => format!(
            "SharedAccessSignature sr={encoded_uri}&sig={signature}&se={expiry_unix_secs}&skn={}",
            utf8_percent_encode(policy, RESOURCE_ENCODE)
        ),
        None => {
            format!("SharedAccessSignature sr={encoded_uri}&sig={signature}&se={expiry_unix_secs}")
        }
    }
}

/// A generated token held for reuse: wiped on drop, never shown by `Debug`.
#[derive(Clone)]
pub(crate) struct SasToken {
    pub(crate) value: Zeroizing<String>,
    pub(crate) expiry_unix_secs: u64,
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("value", &"<redacted>")
            .field("expiry_unix_secs", &self.expiry_unix_secs)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Inputs shared by the tests below. The key is base64
    // "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5YWJjZGVm", decoding to these bytes.
    const KEY: &[u8] = b"secret-key-for-tests-only-0123456789abcdef";

    // Expected tokens were produced by the official Python SDK, azure-iot-hub 2.7.0
    // (`pip install azure-iot-hub`), whose `azure.iot.hub.sastoken.SasToken` sets the
    // expiry to `int(time.time() + ttl)` with ttl 3600, so the clock is pinned:
    //
    //   from unittest import mock
    //   from azure.iot.hub.sastoken import SasToken
    //   key = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5YWJjZGVm"
    //   with mock.patch("time.time", return_value=1234567890 - 3600):
    //       print(str(SasToken("myhub.azure-devices.net", key, "iothubowner")))
    //   with mock.patch("time.time", return_value=1767225600 - 3600):
    //       print(str(SasToken("myhub.azure-devices.net", key, "iothubowner")))
    //   with mock.patch("time.time", return_value=1767225600 - 3600):
    //       print(str(SasToken("myhub.azure-devices.net/devices/dev-1", key)))
    #[test]
    fn matches_the_official_python_sdk() {
        // Signature with both `+` (encoded) and `/` (kept, as Python's quote does).
        assert_eq!(
            generate_sas_token("myhub.azure-devices.net", KEY, Some("iothubowner"), 1234567890),
            "SharedAccessSignature sr=myhub.azure-devices.net&sig=xF%2BI9T9eaew/P9YxKRYoHOsu3UhRmZKTxuESCN4FOiw%3D&se=1234567890&skn=iothubowner"
        );
        assert_eq!(
            generate_sas_token("myhub.azure-devices.net", KEY, Some("iothubowner"), 1767225600),
            "SharedAccessSignature sr=myhub.azure-devices.net&sig=kpejycmnMQ9Oc0kO8j9XUWhJDb4bhwTo4q5lYnI/tgs%3D&se=1767225600&skn=iothubowner"
        );
        // A resource with a path, and no policy: a device-style token.
        assert_eq!(
            generate_sas_token("myhub.azure-devices.net/devices/dev-1", KEY, None, 1767225600),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-1&sig=aeD7yTBQ8OzqOPoOCbvRyn2gKFmcFluk22AkeIQU8Hw%3D&se=1767225600"
        );
    }

    #[test]
    fn resource_uri_is_signed_lowercased() {
        assert_eq!(
            generate_sas_token(
                "MyHub.Azure-Devices.NET",
                KEY,
                Some("iothubowner"),
                1234567890
            ),
            generate_sas_token(
                "myhub.azure-devices.net",
                KEY,
                Some("iothubowner"),
                1234567890
            ),
        );
    }

    #[test]
    fn different_key_or_expiry_changes_the_signature() {
        let base = generate_sas_token("h", KEY, Some("p"), 10);
        assert_ne!(base, generate_sas_token("h", b"other", Some("p"), 10));
        assert_ne!(base, generate_sas_token("h", KEY, Some("p"), 11));
    }

    #[test]
    fn token_debug_is_redacted() {
        let value = generate_sas_token("h", KEY, Some("p"), 10);
        let token = SasToken {
            value: Zeroizing::new(value.clone()),
            expiry_unix_secs: 10,
        };
        let text = format!("{token:?}");
        assert!(!text.contains("sig="), "{text}");
        assert!(!text.contains(&value), "{text}");
    }
}
