//! Bearer tokens: HS256 JWTs with claims `{sub, tenant, iat, exp, iss, jti}`.
//!
//! Verification pins the algorithm to HS256 (a token that names `none` or any other
//! algorithm is refused), checks the issuer and the expiry with a small leeway for clock skew
//! between processes. Whether the app still exists is the caller's check (the API looks it up
//! in the store after [`TokenService::verify`]).

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The `iss` of every token.
pub const ISSUER: &str = "iothubgdr";

/// Accepted clock skew between the process that issued a token and the one checking it.
const LEEWAY_SECONDS: u64 = 5;

/// The bytes of a signing key (32 random bytes by default), wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// A new random signing key (32 bytes), the candidate for `Store::signing_key_get_or_insert`.
pub fn generate_signing_key() -> SigningKey {
    let mut bytes = Zeroizing::new(vec![0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut_slice());
    SigningKey(bytes.to_vec())
}

/// A bearer token, redacted in `Debug`/`Display` and wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(text: String) -> Self {
        Self(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The app's client id.
    pub sub: String,
    /// The tenant the app acts for.
    pub tenant: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub jti: String,
}

#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: AccessToken,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Why a token was refused. The texts are safe to show to the client: they never contain
/// the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is not valid")]
    Invalid,
    #[error("cannot sign a token")]
    Signing,
}

/// Issues and verifies tokens with one key. Cheap to share behind an `Arc`.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// `ttl` is the lifetime of the tokens it issues.
    pub fn new(key: &SigningKey, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.validate_exp = true;
        Self {
            encoding: EncodingKey::from_secret(key.as_bytes()),
            decoding: DecodingKey::from_secret(key.as_bytes()),
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `client_id` acting for `tenant`, valid from now for the service's ttl.
    pub fn issue(&self, client_id: &str, tenant: Uuid) -> Result<IssuedToken, TokenError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let access_token = self.issue_at(client_id, tenant, now, now.saturating_add(ttl))?;
        Ok(IssuedToken {
            access_token,
            expires_in: self.ttl.as_secs(),
        })
    }

    /// A token with explicit `iat` and `exp` (Unix seconds): for tests that need an expired
    /// token, and tools that need a specific lifetime.
    pub fn issue_at(
        &self,
        client_id: &str,
        tenant: Uuid,
        iat: i64,
        exp: i64,
    ) -> Result<AccessToken, TokenError> {
        let claims = Claims {
            sub: client_id.to_owned(),
            tenant,
            iat,
            exp,
            iss: ISSUER.to_owned(),
            jti: Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map(AccessToken)
            .map_err(|_| TokenError::Signing)
    }

    /// The claims of a valid, unexpired token signed with this key using HS256.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn service() -> TokenService {
        TokenService::new(&generate_signing_key(), Duration::from_secs(3600))
    }

    #[test]
    fn issued_token_verifies_with_its_claims() {
        let tokens = service();
        let tenant = Uuid::new_v4();
        let issued = tokens.issue("client-1", tenant).unwrap();
        assert_eq!(issued.expires_in, 3600);
        let claims = tokens.verify(issued.access_token.expose()).unwrap();
        assert_eq!(claims.sub, "client-1");
        assert_eq!(claims.tenant, tenant);
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.exp - claims.iat, 3600);
    }

    #[test]
    fn another_key_is_refused() {
        let issued = service().issue("c", Uuid::new_v4()).unwrap();
        assert_eq!(
            service().verify(issued.access_token.expose()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let tokens = service();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let token = tokens
            .issue_at("c", Uuid::new_v4(), now - 600, now - 300)
            .unwrap();
        assert_eq!(tokens.verify(token.expose()), Err(TokenError::Expired));
    }

    /// A token built by hand: base64url header and payload, and an HMAC-SHA256 signature
    /// with `key` (or an empty signature). No JWT library is involved, so a test can send
    /// what that library would never produce.
    fn hand_built(header: &str, payload: &str, key: Option<&[u8]>) -> String {
        use hmac::{Hmac, Mac};
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = match key {
            Some(key) => {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
                mac.update(signed.as_bytes());
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            }
            None => String::new(),
        };
        format!("{signed}.{signature}")
    }

    fn valid_payload(tenant: Uuid) -> String {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        format!(
            r#"{{"sub":"c","tenant":"{tenant}","iat":{now},"exp":{},"iss":"{ISSUER}","jti":"j"}}"#,
            now + 60
        )
    }

    #[test]
    fn hand_built_tokens_verify_only_when_signed_with_the_key() {
        let key = generate_signing_key();
        let tokens = TokenService::new(&key, Duration::from_secs(60));
        let tenant = Uuid::new_v4();
        let payload = valid_payload(tenant);
        let hs256 = r#"{"alg":"HS256","typ":"JWT"}"#;
        // The control: the same claims, signed by hand with the key, verify. So every
        // refusal below is about the signature or the algorithm, not the claims.
        let signed = hand_built(hs256, &payload, Some(key.as_bytes()));
        assert_eq!(tokens.verify(&signed).map(|c| c.tenant), Ok(tenant));
        let none = r#"{"alg":"none","typ":"JWT"}"#;
        let refused = [
            ("alg none, no signature", hand_built(none, &payload, None)),
            (
                "alg none, no signature part",
                hand_built(none, &payload, None)
                    .trim_end_matches('.')
                    .to_owned(),
            ),
            (
                "alg none with the key's signature",
                hand_built(none, &payload, Some(key.as_bytes())),
            ),
            ("HS256, empty signature", hand_built(hs256, &payload, None)),
            (
                "HS256, another key",
                hand_built(hs256, &payload, Some(generate_signing_key().as_bytes())),
            ),
            (
                "HS256, an empty key",
                hand_built(hs256, &payload, Some(b"")),
            ),
        ];
        for (what, token) in refused {
            assert_eq!(tokens.verify(&token), Err(TokenError::Invalid), "{what}");
        }
    }

    #[test]
    fn other_hmac_algorithm_is_refused() {
        let key = generate_signing_key();
        let tokens = TokenService::new(&key, Duration::from_secs(60));
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: "c".into(),
            tenant: Uuid::new_v4(),
            iat: now,
            exp: now + 60,
            iss: ISSUER.into(),
            jti: "j".into(),
        };
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap();
        assert_eq!(tokens.verify(&hs512), Err(TokenError::Invalid));
    }

    /// Every usual way of printing `bytes`: hex (both cases), base64 (standard and url,
    /// padded or not), the decimal `Debug` of the byte vector, and the raw bytes as text.
    fn printed_forms(bytes: &[u8]) -> Vec<String> {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let decimal: Vec<String> = bytes.iter().map(u8::to_string).collect();
        vec![
            hex.clone(),
            hex.to_uppercase(),
            STANDARD.encode(bytes),
            STANDARD_NO_PAD.encode(bytes),
            URL_SAFE.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
            format!("{bytes:?}"),
            decimal.join(","),
            decimal.join(", "),
            decimal.join(" "),
            String::from_utf8_lossy(bytes).into_owned(),
        ]
    }

    #[test]
    fn debug_shows_no_form_of_the_signing_key() {
        // A random key, and one whose bytes are all printable (so its raw text form is
        // meaningful too).
        for key in [
            generate_signing_key(),
            SigningKey::new(b"0123456789abcdefghijklmnopqrstuv".to_vec()),
        ] {
            let forms = printed_forms(key.as_bytes());
            let tokens = TokenService::new(&key, Duration::from_secs(60));
            let issued = tokens.issue("c", Uuid::new_v4()).unwrap();
            let shown = [
                format!("{key:?}"),
                format!("{key:#?}"),
                format!("{tokens:?}"),
                format!("{tokens:#?}"),
                format!("{issued:?}"),
            ];
            for shown in &shown {
                for form in &forms {
                    // Any 8 consecutive characters of a form would already be a leak.
                    for window in form.as_bytes().windows(8) {
                        let window = String::from_utf8_lossy(window);
                        assert!(!shown.contains(window.as_ref()), "{shown:?} shows {form:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn debug_and_display_say_what_is_hidden() {
        // Hiding is not printing nothing: a log line still tells a reader what was there.
        let key = generate_signing_key();
        let token = service().issue("c", Uuid::new_v4()).unwrap().access_token;
        assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
        assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
        assert_eq!(format!("{token}"), "<redacted>");
        let tokens = TokenService::new(&key, Duration::from_secs(90));
        assert!(format!("{tokens:?}").starts_with("TokenService { ttl: 90s"));
    }

    #[test]
    fn the_lifetime_is_the_configured_one_even_when_huge() {
        let tokens = TokenService::new(&generate_signing_key(), Duration::from_secs(90));
        assert_eq!(tokens.ttl(), Duration::from_secs(90));
        // A lifetime beyond i64 seconds is capped far in the future, never wrapped into
        // the past or into "expires now".
        let forever = TokenService::new(&generate_signing_key(), Duration::MAX);
        let issued = forever.issue("c", Uuid::new_v4()).unwrap();
        let claims = forever.verify(issued.access_token.expose()).unwrap();
        assert!(
            claims.exp - claims.iat > 1_000 * 365 * 24 * 3600,
            "{claims:?}"
        );
    }

    #[test]
    fn debug_and_display_never_show_a_token() {
        let token = service().issue("c", Uuid::new_v4()).unwrap();
        let text = token.access_token.expose().to_owned();
        let shown = format!(
            "{:?} {:#?} {} {:?}",
            token.access_token, token.access_token, token.access_token, token
        );
        // Not the whole token, and none of its three parts.
        assert!(!shown.contains(&text));
        for part in text.split('.') {
            assert!(!shown.contains(part), "{shown}");
        }
    }
}
