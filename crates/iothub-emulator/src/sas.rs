//! Shared access signature checks, written independently of the client crate so that the two
//! verify each other. The token format and the signed string follow
//! <https://learn.microsoft.com/azure/iot-hub/authenticate-authorization-sas#security-tokens>:
//! `SharedAccessSignature sr={URL-encoded-resourceURI}&sig={signature}&se={expiry}&skn={policyName}`,
//! with `sig = base64(HMAC-SHA256(key, "{URL-encoded-resourceURI}\n{expiry}"))`.

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use sha2::Sha256;

use crate::AccessPolicy;

/// Why a request was refused; only for stats and logs, never shown with secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SasRejection {
    Missing,
    Malformed,
    UnknownPolicy,
    BadSignature,
    Expired,
    WrongResource,
    InsufficientRights,
}

pub(crate) struct ParsedToken<'a> {
    /// The resource exactly as sent (still URL-encoded): the signature covers this text.
    pub(crate) resource_encoded: &'a str,
    pub(crate) signature: Vec<u8>,
    pub(crate) expiry_text: &'a str,
    pub(crate) expiry: u64,
    pub(crate) policy: String,
}

pub(crate) fn parse(header: &str) -> Result<ParsedToken<'_>, SasRejection> {
    let rest = header
        .trim()
        .strip_prefix("SharedAccessSignature ")
        .ok_or(SasRejection::Malformed)?;
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for pair in rest.trim().split('&') {
        let (name, value) = pair.split_once('=').ok_or(SasRejection::Malformed)?;
        match name {
            "sr" => sr = Some(value),
            "sig" => sig = Some(value),
            "se" => se = Some(value),
            "skn" => skn = Some(value),
            _ => {}
        }
    }
    let (sr, sig, se, skn) = match (sr, sig, se, skn) {
        (Some(sr), Some(sig), Some(se), Some(skn)) => (sr, sig, se, skn),
        _ => return Err(SasRejection::Malformed),
    };
    let sig_text = percent_decode_str(sig)
        .decode_utf8()
        .map_err(|_| SasRejection::Malformed)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(sig_text.as_bytes())
        .map_err(|_| SasRejection::Malformed)?;
    let expiry = se.parse::<u64>().map_err(|_| SasRejection::Malformed)?;
    let policy = percent_decode_str(skn)
        .decode_utf8()
        .map_err(|_| SasRejection::Malformed)?
        .into_owned();
    Ok(ParsedToken {
        resource_encoded: sr,
        signature,
        expiry_text: se,
        expiry,
        policy,
    })
}

/// Checks the signature with a constant-time comparison (`Mac::verify_slice`).
pub(crate) fn signature_matches(token: &ParsedToken<'_>, policy: &AccessPolicy) -> bool {
    let Ok(key) = base64::engine::general_purpose::STANDARD.decode(policy.primary_key.as_bytes())
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(token.resource_encoded.as_bytes());
    mac.update(b"\n");
    mac.update(token.expiry_text.as_bytes());
    mac.verify_slice(&token.signature).is_ok()
}

/// The token's resource must name this hub (its host, or the host:port the caller dialled)
/// and, if it carries a path, be a prefix of the requested path, as the hub scopes tokens.
pub(crate) fn resource_matches(
    token: &ParsedToken<'_>,
    hub_host: &str,
    request_authority: Option<&str>,
    request_path: &str,
) -> bool {
    let Ok(decoded) = percent_decode_str(token.resource_encoded).decode_utf8() else {
        return false;
    };
    let lowered = decoded.to_ascii_lowercase();
    let without_scheme = lowered
        .strip_prefix("https://")
        .or_else(|| lowered.strip_prefix("http://"))
        .unwrap_or(&lowered);
    let (host, path) = match without_scheme.find('/') {
        Some(slash) => (&without_scheme[..slash], &without_scheme[slash..]),
        None => (without_scheme, ""),
    };
    let host_ok = host == hub_host.to_ascii_lowercase()
        || host.split(':').next() == Some(&hub_host.to_ascii_lowercase())
        || request_authority.is_some_and(|authority| host == authority.to_ascii_lowercase());
    let path = path.trim_end_matches('/');
    host_ok && request_path.to_ascii_lowercase().starts_with(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(resource: &str, key_b64: &str, expiry: u64, policy: &str) -> String {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_b64)
            .unwrap();
        let encoded: String = url::form_urlencoded::byte_serialize(resource.as_bytes()).collect();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{encoded}\n{expiry}").as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
        format!("SharedAccessSignature sr={encoded}&sig={sig}&se={expiry}&skn={policy}")
    }

    fn policy() -> AccessPolicy {
        AccessPolicy {
            name: "iothubowner".into(),
            primary_key: base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
            registry_read: true,
            registry_write: true,
            service_connect: true,
        }
    }

    #[test]
    fn accepts_a_token_signed_with_the_policy_key() {
        let p = policy();
        let header = sign(
            "hub.azure-devices.net",
            &p.primary_key,
            2_000_000_000,
            "iothubowner",
        );
        let token = parse(&header).unwrap();
        assert!(signature_matches(&token, &p));
        assert!(resource_matches(
            &token,
            "hub.azure-devices.net",
            None,
            "/devices/query"
        ));
        assert!(!resource_matches(
            &token,
            "other.azure-devices.net",
            None,
            "/devices/query"
        ));
    }

    #[test]
    fn rejects_a_token_signed_with_another_key() {
        let p = policy();
        let other = base64::engine::general_purpose::STANDARD.encode([8u8; 32]);
        let header = sign(
            "hub.azure-devices.net",
            &other,
            2_000_000_000,
            "iothubowner",
        );
        assert!(!signature_matches(&parse(&header).unwrap(), &p));
    }

    #[test]
    fn accepts_the_authority_the_caller_dialled_and_path_prefixes() {
        let p = policy();
        let header = sign(
            "localhost:8443/devices",
            &p.primary_key,
            2_000_000_000,
            "iothubowner",
        );
        let token = parse(&header).unwrap();
        assert!(resource_matches(
            &token,
            "hub.azure-devices.net",
            Some("localhost:8443"),
            "/devices/x"
        ));
        assert!(!resource_matches(
            &token,
            "hub.azure-devices.net",
            Some("localhost:8443"),
            "/twins/x"
        ));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        assert!(parse("Bearer abc").is_err());
        assert!(parse("SharedAccessSignature sr=a&sig=%%%&se=1&skn=x").is_err());
        assert!(parse("SharedAccessSignature sr=a&se=1&skn=x").is_err());
        assert!(parse("SharedAccessSignature sr=a&sig=AAAA&se=soon&skn=x").is_err());
    }
}
