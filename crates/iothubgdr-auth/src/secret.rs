//! Client ids and client secrets.
//!
//! A client secret is 32 bytes from the OS random generator, shown once to the operator as
//! base64url (43 characters). Only SHA-256 of the secret's text is stored. A fast hash is
//! enough here: slow password hashes (argon2, bcrypt) exist to resist guessing of
//! low-entropy human passwords, while a 256-bit random secret cannot be guessed from its hash
//! at any speed.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A new client id: a UUID v4 in its hyphenated form.
pub fn new_client_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A client secret. Its `Debug` and `Display` never show it and its memory is wiped on drop;
/// read it only with [`ClientSecret::expose`] where it must leave the process (printed once).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        Self(URL_SAFE_NO_PAD.encode(bytes.as_ref()))
    }

    /// Wraps a secret that a client presented.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value kept in the database: SHA-256 of the secret's text.
    pub fn hash(&self) -> Vec<u8> {
        hash_secret(&self.0)
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

impl fmt::Display for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// SHA-256 of a secret's text.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Does `presented` match the stored hash? The comparison takes the same time wherever the
/// hashes differ.
pub fn verify_secret(presented: &ClientSecret, stored_hash: &[u8]) -> bool {
    let presented_hash = Zeroizing::new(presented.hash());
    presented_hash.as_slice().ct_eq(stored_hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_random_and_distinct() {
        let a = ClientSecret::generate();
        let b = ClientSecret::generate();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let secret = ClientSecret::generate();
        let shown = format!("{secret:?} {secret}");
        assert!(!shown.contains(secret.expose()));
        assert_eq!(shown, "ClientSecret(<redacted>) <redacted>");
    }

    #[test]
    fn only_the_right_secret_verifies() {
        let secret = ClientSecret::generate();
        let stored = secret.hash();
        assert_ne!(stored, secret.expose().as_bytes());
        assert!(verify_secret(&secret, &stored));
        assert!(!verify_secret(&ClientSecret::generate(), &stored));
        assert!(!verify_secret(&ClientSecret::new(String::new()), &stored));
        assert!(!verify_secret(&secret, &[]));
    }

    #[test]
    fn client_ids_are_uuid_v4() {
        let id = new_client_id();
        let parsed = uuid::Uuid::parse_str(&id).expect("uuid");
        assert_eq!(parsed.get_version_num(), 4);
    }
}
