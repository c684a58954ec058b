//! `iothubgdr apps`: app registrations (client id and secret), written straight to the
//! database by an operator.

use anyhow::Context;
use iothubgdr_auth::{new_client_id, ClientSecret};
use iothubgdr_store::{App, NewApp, Store};
use serde_json::json;

use crate::serve::DatabaseArgs;

#[derive(Debug, clap::Subcommand)]
pub enum AppsCommand {
    /// Create an app registration and print its client id and secret (shown only once) as JSON.
    Create {
        /// A name for people.
        #[arg(long)]
        display_name: String,
        /// The tenant it acts for; created when new.
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List app registrations as JSON lines (never their secrets).
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Delete an app registration; its tokens stop working at once.
    Delete {
        client_id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// A new app registration of `tenant` and its secret (only a hash of it is stored).
pub async fn create(
    store: &dyn Store,
    display_name: String,
    tenant: String,
) -> anyhow::Result<(App, ClientSecret)> {
    let secret = ClientSecret::generate();
    let app = store
        .app_create(NewApp {
            client_id: new_client_id(),
            display_name,
            tenant_name: tenant,
            secret_hash: secret.hash(),
        })
        .await
        .context("cannot create the app registration")?;
    Ok((app, secret))
}

fn describe(app: &App) -> serde_json::Value {
    json!({
        "client_id": app.client_id,
        "display_name": app.display_name,
        "tenant": app.tenant.name,
        "tenant_identity": iothubgdr_api::tenant_identity(app.tenant.id),
        "created_at": iothubgdr_api::render_time(app.created_at),
    })
}

pub async fn run(command: AppsCommand) -> anyhow::Result<()> {
    match command {
        AppsCommand::Create {
            display_name,
            tenant,
            database,
        } => {
            anyhow::ensure!(
                !display_name.trim().is_empty(),
                "--display-name must not be empty"
            );
            anyhow::ensure!(!tenant.trim().is_empty(), "--tenant must not be empty");
            let store = database.open_store().await?;
            let (app, secret) = create(store.as_ref(), display_name, tenant).await?;
            let mut shown = describe(&app);
            shown["client_secret"] = json!(secret.expose());
            println!("{shown}");
        }
        AppsCommand::List { database } => {
            let store = database.open_store().await?;
            for app in store
                .app_list()
                .await
                .context("cannot list app registrations")?
            {
                println!("{}", describe(&app));
            }
        }
        AppsCommand::Delete {
            client_id,
            database,
        } => {
            let store = database.open_store().await?;
            let deleted = store
                .app_delete(&client_id)
                .await
                .context("cannot delete the app registration")?;
            anyhow::ensure!(deleted, "no app registration with client id {client_id}");
            println!("{}", json!({"deleted": client_id}));
        }
    }
    Ok(())
}
