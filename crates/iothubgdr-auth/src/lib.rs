//! App registration secrets and bearer tokens.
//!
//! - [`secret`]: client ids, client secrets (generated, shown once, stored only as a hash) and
//!   their constant-time check.
//! - [`token`]: HS256 JWTs naming the app and its tenant, signed with a key shared through
//!   the database so every process on it accepts the same tokens.

pub mod secret;
pub mod token;

pub use secret::{hash_secret, new_client_id, verify_secret, ClientSecret};
pub use token::{
    generate_signing_key, AccessToken, Claims, IssuedToken, SigningKey, TokenError, TokenService,
    ISSUER,
};
