//! Bearer tokens: HS256 JWTs with claims `{sub, tenant, iat, exp, iss, jti}` and the id of
//! their signing key (`kid`) in the header.
//!
//! Verification pins the algorithm to HS256 (a token that names `none` or any other
//! algorithm is refused), checks the issuer and the expiry with a small leeway for clock skew
//! between processes. Whether the app still exists is the caller's check (the API looks it up
//! in the store after [`TokenService::verify`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

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

/// Longest and shortest accepted key ids (`kid`).
const MAX_KID_CHARS: usize = 64;
/// The shortest key accepted: HS256 wants at least as many key bytes as its output.
pub const MIN_KEY_BYTES: usize = 32;

/// A token signing key: its id (`kid` in the header of the tokens it signs) and its bytes
/// (32 random bytes by default), wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SigningKey {
    kid: String,
    bytes: Vec<u8>,
}

impl SigningKey {
    /// A key with this id; refused when the id is not 1 to 64 of `A-Z a-z 0-9 - _ .` or the
    /// key is shorter than [`MIN_KEY_BYTES`].
    pub fn new(kid: impl Into<String>, bytes: Vec<u8>) -> Result<Self, KeyError> {
        let kid = kid.into();
        if !valid_kid(&kid) {
            return Err(KeyError::BadKid);
        }
        if bytes.len() < MIN_KEY_BYTES {
            let mut bytes = bytes;
            bytes.zeroize();
            return Err(KeyError::TooShort);
        }
        Ok(Self { kid, bytes })
    }

    /// A new random key (32 bytes) with a new random id.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut_slice());
        let mut id = [0u8; 6];
        OsRng.fill_bytes(&mut id);
        let kid = format!(
            "k{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Self {
            kid,
            bytes: bytes.to_vec(),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key as one line of a keys file: `<kid> <base64 key>`.
    pub fn to_line(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{} {}", self.kid, STANDARD.encode(&self.bytes)))
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_CHARS
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <redacted>)", self.kid)
    }
}

/// Why a key was refused. Never holds key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("a key id must be 1 to 64 characters of A-Z, a-z, 0-9, `-`, `_` and `.`")]
    BadKid,
    #[error("a signing key must be at least {MIN_KEY_BYTES} bytes")]
    TooShort,
    #[error("line {0} of the keys is not `<kid> <base64 key>`")]
    BadLine(usize),
    #[error("key id {0} appears twice")]
    DuplicateKid(String),
    #[error("no signing key is given")]
    Empty,
}

/// Parses keys given by an operator (a keys file or an environment variable): one key a
/// line, `<kid> <base64 key>`, blank lines and `#` comments ignored. The first key signs new
/// tokens; every key verifies. Errors name the line, never its content.
pub fn parse_keys(text: &str) -> Result<Vec<SigningKey>, KeyError> {
    let mut keys: Vec<SigningKey> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        let (kid, encoded) = line
            .split_once(char::is_whitespace)
            .ok_or(KeyError::BadLine(number))?;
        let bytes = STANDARD
            .decode(encoded.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim()))
            .map_err(|_| KeyError::BadLine(number))?;
        let key = SigningKey::new(kid, bytes)?;
        if keys.iter().any(|known| known.kid == key.kid) {
            return Err(KeyError::DuplicateKid(key.kid.clone()));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(keys)
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

/// The keys a [`TokenService`] works with: one signs, all verify.
struct KeyRing {
    signing_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
}

impl KeyRing {
    fn new(signing: &SigningKey, verifying: &[SigningKey]) -> Self {
        let mut decoding: HashMap<String, DecodingKey> = verifying
            .iter()
            .map(|key| (key.kid.clone(), DecodingKey::from_secret(&key.bytes)))
            .collect();
        decoding.insert(
            signing.kid.clone(),
            DecodingKey::from_secret(&signing.bytes),
        );
        Self {
            signing_kid: signing.kid.clone(),
            encoding: EncodingKey::from_secret(&signing.bytes),
            decoding,
        }
    }
}

/// Issues and verifies tokens. Tokens name their key in the header (`kid`); a token whose
/// key is unknown here (retired, or never ours) is refused. The keys can be replaced while
/// the service runs ([`TokenService::set_keys`]), so a key rotated or retired through the
/// database takes effect without a restart. Cheap to share behind an `Arc`.
pub struct TokenService {
    keys: RwLock<Arc<KeyRing>>,
    validation: Validation,
    ttl: Duration,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("signing_kid", &self.signing_kid())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// Signs with `signing`, verifies with it and with every key of `verifying`; `ttl` is
    /// the lifetime of the tokens it issues.
    pub fn new(signing: &SigningKey, verifying: &[SigningKey], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.validate_exp = true;
        Self {
            keys: RwLock::new(Arc::new(KeyRing::new(signing, verifying))),
            validation,
            ttl,
        }
    }

    /// Replaces the keys: tokens of keys no longer listed are refused from now on.
    pub fn set_keys(&self, signing: &SigningKey, verifying: &[SigningKey]) {
        let ring = Arc::new(KeyRing::new(signing, verifying));
        match self.keys.write() {
            Ok(mut keys) => *keys = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
    }

    fn ring(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The id of the key that signs new tokens.
    pub fn signing_kid(&self) -> String {
        self.ring().signing_kid.clone()
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
        let ring = self.ring();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(ring.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &ring.encoding)
            .map(AccessToken)
            .map_err(|_| TokenError::Signing)
    }

    /// The claims of a valid, unexpired token signed using HS256 with one of this service's
    /// keys, named by the token's `kid`.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let ring = self.ring();
        let key = ring.decoding.get(&kid).ok_or(TokenError::Invalid)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
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

    fn service() -> TokenService {
        TokenService::new(&SigningKey::generate(), &[], Duration::from_secs(3600))
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
        let key = SigningKey::generate();
        let tokens = TokenService::new(&key, &[], Duration::from_secs(60));
        let tenant = Uuid::new_v4();
        let payload = valid_payload(tenant);
        let hs256 = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#, key.kid());
        let hs256 = hs256.as_str();
        // The control: the same claims, signed by hand with the key, verify. So every
        // refusal below is about the signature or the algorithm, not the claims.
        let signed = hand_built(hs256, &payload, Some(key.as_bytes()));
        assert_eq!(tokens.verify(&signed).map(|c| c.tenant), Ok(tenant));
        let none = format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, key.kid());
        let none = none.as_str();
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
                hand_built(hs256, &payload, Some(SigningKey::generate().as_bytes())),
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
        let key = SigningKey::generate();
        let tokens = TokenService::new(&key, &[], Duration::from_secs(60));
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: "c".into(),
            tenant: Uuid::new_v4(),
            iat: now,
            exp: now + 60,
            iss: ISSUER.into(),
            jti: "j".into(),
        };
        let mut header = Header::new(Algorithm::HS512);
        header.kid = Some(key.kid().to_owned());
        let hs512 =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key.as_bytes()))
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
    fn secrets_are_redacted_in_debug() {
        let key = SigningKey::generate();
        let token = service().issue("c", Uuid::new_v4()).unwrap();
        let shown = format!("{key:?} {token:?} {}", token.access_token);
        assert!(!shown.contains(token.access_token.expose()));
        assert!(!shown.contains(&STANDARD.encode(key.as_bytes())));
        assert!(!format!("{:?}", key.as_bytes()).is_empty());
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn debug_shows_no_form_of_the_signing_key() {
        // A random key, and one whose bytes are all printable (so its raw text form is
        // meaningful too).
        for key in [
            SigningKey::generate(),
            SigningKey::new("printable", b"0123456789abcdefghijklmnopqrstuv".to_vec()).unwrap(),
        ] {
            let forms = printed_forms(key.as_bytes());
            let tokens = TokenService::new(&key, &[], Duration::from_secs(60));
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
        let key = SigningKey::generate();
        let token = service().issue("c", Uuid::new_v4()).unwrap().access_token;
        assert_eq!(
            format!("{key:?}"),
            format!("SigningKey({}, <redacted>)", key.kid())
        );
        assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
        assert_eq!(format!("{token}"), "<redacted>");
        let tokens = TokenService::new(&key, &[], Duration::from_secs(90));
        assert!(format!("{tokens:?}").contains("ttl: 90s"), "{tokens:?}");
    }

    #[test]
    fn the_lifetime_is_the_configured_one_even_when_huge() {
        let tokens = TokenService::new(&SigningKey::generate(), &[], Duration::from_secs(90));
        assert_eq!(tokens.ttl(), Duration::from_secs(90));
        // A lifetime beyond i64 seconds is capped far in the future, never wrapped into
        // the past or into "expires now".
        let forever = TokenService::new(&SigningKey::generate(), &[], Duration::MAX);
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

    #[test]
    fn tokens_name_their_key_and_rotation_keeps_old_tokens_until_their_key_is_dropped() {
        let old = SigningKey::generate();
        let new = SigningKey::generate();
        let tokens = TokenService::new(&old, &[], Duration::from_secs(60));
        let before = tokens.issue("c", Uuid::new_v4()).unwrap();
        let header = jsonwebtoken::decode_header(before.access_token.expose()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(old.kid()));

        tokens.set_keys(&new, std::slice::from_ref(&old));
        assert_eq!(tokens.signing_kid(), new.kid());
        let after = tokens.issue("c", Uuid::new_v4()).unwrap();
        assert!(tokens.verify(before.access_token.expose()).is_ok());
        assert!(tokens.verify(after.access_token.expose()).is_ok());

        tokens.set_keys(&new, &[]);
        assert_eq!(
            tokens.verify(before.access_token.expose()),
            Err(TokenError::Invalid)
        );
        assert!(tokens.verify(after.access_token.expose()).is_ok());
    }

    #[test]
    fn a_token_without_kid_is_refused() {
        let key = SigningKey::generate();
        let tokens = TokenService::new(&key, &[], Duration::from_secs(60));
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: "c".into(),
            tenant: Uuid::new_v4(),
            iat: now,
            exp: now + 60,
            iss: ISSUER.into(),
            jti: "j".into(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap();
        assert_eq!(tokens.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn keys_parse_from_lines_and_errors_show_no_material() {
        let a = SigningKey::generate();
        let b = SigningKey::generate();
        let text = format!("# keys\n{}\n\n{}\n", *a.to_line(), *b.to_line());
        let keys = parse_keys(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].kid(), a.kid());
        assert_eq!(keys[1].as_bytes(), b.as_bytes());
        let secret = STANDARD.encode([7u8; 16]);
        let err = parse_keys(&format!("short {secret}")).unwrap_err();
        assert_eq!(err, KeyError::TooShort);
        let err = parse_keys(&format!("bad!kid {}", STANDARD.encode([7u8; 32]))).unwrap_err();
        assert_eq!(err, KeyError::BadKid);
        let err = parse_keys("lonely-line-without-key").unwrap_err();
        assert!(!err.to_string().contains("lonely"));
        assert!(matches!(parse_keys("\n# nothing\n"), Err(KeyError::Empty)));
        let twice = format!("{}\n{}", *a.to_line(), *a.to_line());
        assert!(matches!(parse_keys(&twice), Err(KeyError::DuplicateKid(_))));
    }
}
