//! The connection flags every client command takes, and how they become an [`ApiClient`].

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::client::ApiClient;
use crate::error::ClientError;
use crate::secret::{read_secret, SecretSource, SecretString};

/// Environment variable holding the client secret when --client-secret-file is not given.
pub const CLIENT_SECRET_ENV: &str = "IOTHUBGDR_CLIENT_SECRET";

/// Where the server is and how to authenticate to it.
///
/// The token comes from `--token-file` / `$BEARER_TOKEN_FILE` (which wins when both ways are
/// set), else from `--client-id` with the client secret read from `--client-secret-file`
/// (`-`: standard input) or `$IOTHUBGDR_CLIENT_SECRET`, exchanged at the token endpoint.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// Base URL of the iothubgdr server.
    #[arg(
        long,
        env = "IOTHUBGDR_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub url: String,

    /// File holding the bearer token, as `Authorization: Bearer <token>` (the line curl's
    /// `-H @file` sends) or the bare token.
    #[arg(long, env = "BEARER_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Client id of an app registration (`iothubgdr apps create`), used when no token file
    /// is given; its secret comes from --client-secret-file or $IOTHUBGDR_CLIENT_SECRET.
    #[arg(long, env = "IOTHUBGDR_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,

    /// File holding the client secret (`-`: standard input). Never pass a secret as an
    /// argument: others can read the process list.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
}

/// How a command authenticates, decided from the flags before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    TokenFile(PathBuf),
    ClientCredentials {
        client_id: String,
        secret: SecretSource,
    },
}

impl ConnectionArgs {
    /// A connection to `url` with a token file.
    pub fn with_token_file(url: impl Into<String>, token_file: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            token_file: Some(token_file.into()),
            client_id: None,
            client_secret_file: None,
        }
    }

    pub fn credentials(&self) -> Result<Credentials, ClientError> {
        if let Some(path) = &self.token_file {
            return Ok(Credentials::TokenFile(path.clone()));
        }
        if let Some(client_id) = self.client_id.as_ref().filter(|c| !c.trim().is_empty()) {
            return Ok(Credentials::ClientCredentials {
                client_id: client_id.trim().to_owned(),
                secret: SecretSource::from_flag(
                    self.client_secret_file.as_deref(),
                    CLIENT_SECRET_ENV,
                ),
            });
        }
        Err(ClientError::Credentials(
            "no credentials: give --token-file FILE (or set BEARER_TOKEN_FILE) holding \
             `Authorization: Bearer <token>`, or --client-id ID (or IOTHUBGDR_CLIENT_ID) with \
             the secret in --client-secret-file FILE or IOTHUBGDR_CLIENT_SECRET"
                .to_owned(),
        ))
    }

    /// Whether these flags read standard input (so no other secret may come from it).
    pub fn reads_stdin(&self) -> bool {
        matches!(
            self.credentials(),
            Ok(Credentials::ClientCredentials {
                secret: SecretSource::Stdin,
                ..
            })
        )
    }

    /// Reads the credentials and builds the client (asking the token endpoint if needed).
    pub async fn connect(
        &self,
        stdin: &mut dyn Read,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ApiClient, ClientError> {
        match self.credentials()? {
            Credentials::TokenFile(path) => {
                let token = read_token_file(&path)?;
                ApiClient::new(&self.url, token)
            }
            Credentials::ClientCredentials { client_id, secret } => {
                let secret = read_secret(
                    &secret,
                    "client secret",
                    "give --client-secret-file FILE (`-` for standard input) or set IOTHUBGDR_CLIENT_SECRET",
                    stdin,
                    env,
                )
                .map_err(|e| ClientError::Credentials(e.to_string()))?;
                ApiClient::from_client_credentials(&self.url, &client_id, &secret).await
            }
        }
    }
}

/// Reads a token file: `Authorization: Bearer <token>`, `Bearer <token>` or `<token>`.
pub fn read_token_file(path: &Path) -> Result<SecretString, ClientError> {
    let content = read_secret(
        &SecretSource::File(path.to_path_buf()),
        "bearer token",
        "",
        &mut std::io::empty(),
        &|_| None,
    )
    .map_err(|e| {
        ClientError::Credentials(format!(
            "{e}. The token file (--token-file or BEARER_TOKEN_FILE) must hold `Authorization: Bearer <token>`"
        ))
    })?;
    parse_token(content.expose()).ok_or_else(|| {
        ClientError::Credentials(format!(
            "the token file {} is not in a known form: it must hold one line \
             `Authorization: Bearer <token>` (or `Bearer <token>`, or the bare token)",
            path.display()
        ))
    })
}

/// The token out of a token file's text, or `None` when the text has no known form.
pub fn parse_token(text: &str) -> Option<SecretString> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let after_header = match line.split_once(':') {
        Some((name, rest)) if name.trim().eq_ignore_ascii_case("authorization") => rest.trim(),
        Some(_) => return None,
        None => line,
    };
    let token = match after_header.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None => after_header,
    };
    let valid = !token.is_empty()
        && !token.eq_ignore_ascii_case("bearer")
        && token.chars().all(|c| c.is_ascii_graphic());
    valid.then(|| SecretString::new(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl";

    #[test]
    fn token_file_forms() {
        for text in [
            format!("Authorization: Bearer {TOKEN}\n"),
            format!("authorization:bearer {TOKEN}"),
            format!("  Authorization:   Bearer   {TOKEN}  \r\n"),
            format!("Bearer {TOKEN}"),
            format!("{TOKEN}\n"),
        ] {
            let token = parse_token(&text).unwrap_or_else(|| panic!("{text:?}"));
            assert_eq!(token.expose(), TOKEN);
        }
        for bad in [
            "",
            "Authorization: Bearer",
            "Authorization: Basic dXNlcjpwYXNz",
            "X-Other: Bearer abc",
            "Bearer two words",
        ] {
            assert!(parse_token(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn an_unreadable_or_malformed_token_file_is_an_auth_error_without_its_content() {
        let err = read_token_file(Path::new("/nonexistent/token")).unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(err.to_string().contains("/nonexistent/token"));

        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "Authorization: Basic c2VjcmV0LXBhc3M=").unwrap();
        let err = read_token_file(file.path()).unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn a_token_file_wins_over_client_credentials() {
        let args = ConnectionArgs {
            url: "http://127.0.0.1:8080".into(),
            token_file: Some("/tmp/t".into()),
            client_id: Some("app".into()),
            client_secret_file: None,
        };
        assert_eq!(
            args.credentials().unwrap(),
            Credentials::TokenFile("/tmp/t".into())
        );
    }

    #[test]
    fn client_credentials_read_the_secret_file_or_env() {
        let mut args = ConnectionArgs {
            url: "http://127.0.0.1:8080".into(),
            client_id: Some("app".into()),
            ..Default::default()
        };
        assert_eq!(
            args.credentials().unwrap(),
            Credentials::ClientCredentials {
                client_id: "app".into(),
                secret: SecretSource::Env(CLIENT_SECRET_ENV)
            }
        );
        assert!(!args.reads_stdin());
        args.client_secret_file = Some("-".into());
        assert!(args.reads_stdin());
    }

    #[test]
    fn no_credentials_says_how_to_give_them() {
        let err = ConnectionArgs::default().credentials().unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(err.to_string().contains("--token-file"));
        assert!(err.to_string().contains("--client-id"));
    }

    #[tokio::test]
    async fn a_missing_client_secret_is_an_auth_error_before_any_request() {
        let args = ConnectionArgs {
            url: "http://127.0.0.1:9".into(),
            client_id: Some("app".into()),
            ..Default::default()
        };
        let err = args
            .connect(&mut std::io::empty(), &|_| None)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(err.to_string().contains("IOTHUBGDR_CLIENT_SECRET"));
    }
}
