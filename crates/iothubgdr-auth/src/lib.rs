//! App registration secrets and bearer tokens.
//!
//! - [`secret`]: client ids, client secrets (generated, shown once, stored only as a hash) and
//!   their constant-time check.
//! - [`token`]: HS256 JWTs naming the app, its tenant and their signing key (`kid`), signed
//!   with keys shared through the database (or given to every process in a file), so every
//!   process accepts the same tokens and keys can be rotated.

pub mod secret;
pub mod token;

pub use secret::{hash_secret, new_client_id, verify_secret, ClientSecret};
pub use token::{
    parse_keys, AccessToken, Claims, IssuedToken, KeyError, SigningKey, TokenError, TokenService,
    ISSUER, MIN_KEY_BYTES,
};
