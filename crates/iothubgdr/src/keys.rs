//! `iothubgdr keys`: the token signing keys kept in the database (the embedded default), and
//! a generator for keys an operator keeps outside it.
//!
//! Rotation: `keys rotate` adds a new key; within [`crate::serve::KEY_REFRESH`] every server
//! on the database signs with it, while tokens signed by older keys stay valid. Once the
//! longest token lifetime (`--token-ttl`) has passed, `keys retire KID` makes every server
//! refuse the old key's tokens. Retiring is explicit, never automatic: the servers on one
//! database may run with different `--token-ttl`, and only the operator knows the longest.

use anyhow::Context;
use iothubgdr_api::render_time;
use iothubgdr_auth::SigningKey;
use iothubgdr_store::{Store, StoredSigningKey};
use serde_json::json;

use crate::serve::DatabaseArgs;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// List the signing keys kept in the database as JSON lines (ids and dates, never the
    /// keys): which one signs, which verify, which are retired.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Add a new signing key to the database. Running servers sign with it within seconds;
    /// tokens signed by older keys stay valid until those keys are retired.
    Rotate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Retire a key: every server refuses the tokens it signed within seconds. Retire a key
    /// once the longest --token-ttl has passed since the rotation that replaced it (at once
    /// if it leaked). The key that signs new tokens cannot be retired: rotate first.
    Retire {
        /// The key id (`kid`), as `keys list` shows it.
        kid: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print a new key as a line for a --token-keys-file (or IOTHUBGDR_TOKEN_KEYS): `<kid>
    /// <base64 key>`. Keys given that way never reach the database.
    Generate,
}

fn describe(key: &StoredSigningKey, signing: bool) -> serde_json::Value {
    json!({
        "kid": key.kid,
        "created": render_time(key.created_at),
        "retired": key.retired_at.map(render_time),
        "signs": signing,
        "verifies": key.retired_at.is_none(),
    })
}

/// The kid of the key that signs: the newest that is not retired.
fn signing_kid(keys: &[StoredSigningKey]) -> Option<&str> {
    keys.iter()
        .rev()
        .find(|key| key.retired_at.is_none())
        .map(|key| key.kid.as_str())
}

async fn list(store: &dyn Store) -> anyhow::Result<()> {
    let keys = store
        .signing_keys()
        .await
        .context("cannot read the signing keys")?;
    let signing = signing_kid(&keys);
    for key in &keys {
        println!("{}", describe(key, Some(key.kid.as_str()) == signing));
    }
    Ok(())
}

async fn rotate(store: &dyn Store) -> anyhow::Result<()> {
    let key = SigningKey::generate();
    store
        .signing_key_add(key.kid(), key.as_bytes(), false)
        .await
        .context("cannot add the signing key")?;
    println!(
        "{}",
        json!({
            "kid": key.kid(),
            "signs": true,
            "note": "running servers sign with this key within seconds; retire the older keys once the longest token lifetime has passed",
        })
    );
    Ok(())
}

async fn retire(store: &dyn Store, kid: &str) -> anyhow::Result<()> {
    let keys = store
        .signing_keys()
        .await
        .context("cannot read the signing keys")?;
    anyhow::ensure!(
        signing_kid(&keys) != Some(kid),
        "key {kid} signs new tokens: run `iothubgdr keys rotate` first, then retire it"
    );
    let retired = store
        .signing_key_retire(kid)
        .await
        .context("cannot retire the signing key")?;
    anyhow::ensure!(retired, "no signing key {kid} that is not already retired");
    println!("{}", json!({"kid": kid, "retired": true}));
    Ok(())
}

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate => {
            let key = SigningKey::generate();
            println!("{}", *key.to_line());
            Ok(())
        }
        KeysCommand::List { database } => list(database.open_store().await?.as_ref()).await,
        KeysCommand::Rotate { database } => rotate(database.open_store().await?.as_ref()).await,
        KeysCommand::Retire { kid, database } => {
            retire(database.open_store().await?.as_ref(), &kid).await
        }
    }
}
