//! Secrets the client handles (IoT Hub connection strings, client secrets, bearer tokens) and
//! where they may come from.
//!
//! A secret is never taken from a command-line argument, because every user of the machine
//! can read the arguments of a process. It comes from a file, from standard input (`-`) or
//! from an environment variable, and lives in a [`SecretString`], whose `Debug` and `Display`
//! print `[redacted]` and whose memory is wiped when it is dropped.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// A secret text: redacted when printed, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself, for the one place that sends it over the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file; its whole content, without the surrounding whitespace and line ends.
    File(PathBuf),
    /// Standard input (`-` in place of a file name), read to its end.
    Stdin,
    /// An environment variable, by name.
    Env(&'static str),
}

impl SecretSource {
    /// `--xxx-file PATH` (where `-` means standard input), else the environment variable.
    pub fn from_flag(path: Option<&Path>, env_name: &'static str) -> Self {
        match path {
            Some(p) if p == Path::new("-") => Self::Stdin,
            Some(p) => Self::File(p.to_path_buf()),
            None => Self::Env(env_name),
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Stdin => f.write_str("standard input"),
            Self::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// Why a secret could not be read. The messages name the source, never its content.
#[derive(Debug, thiserror::Error)]
pub enum SecretReadError {
    #[error("cannot read the {what} from {source_name}: {cause}")]
    Unreadable {
        what: &'static str,
        source_name: String,
        cause: std::io::Error,
    },
    #[error("the {what} from {source_name} is empty")]
    Empty {
        what: &'static str,
        source_name: String,
    },
    #[error("no {what} given: {hint}")]
    Missing { what: &'static str, hint: String },
    #[error("the {what} from {source_name} is not valid UTF-8 text")]
    NotText {
        what: &'static str,
        source_name: String,
    },
}

/// Reads a secret. `stdin` and `env` are parameters so tests do not touch the process's own.
/// `what` names the secret in messages ("IoT Hub connection string"); `hint` says how to give
/// it when it is missing.
pub fn read_secret(
    source: &SecretSource,
    what: &'static str,
    hint: &str,
    stdin: &mut dyn Read,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretString, SecretReadError> {
    let source_name = source.to_string();
    let raw = match source {
        SecretSource::File(path) => {
            let bytes = Zeroizing::new(std::fs::read(path).map_err(|cause| {
                SecretReadError::Unreadable {
                    what,
                    source_name: source_name.clone(),
                    cause,
                }
            })?);
            bytes_to_text(&bytes, what, &source_name)?
        }
        SecretSource::Stdin => {
            let mut bytes = Zeroizing::new(Vec::new());
            stdin
                .read_to_end(&mut bytes)
                .map_err(|cause| SecretReadError::Unreadable {
                    what,
                    source_name: source_name.clone(),
                    cause,
                })?;
            bytes_to_text(&bytes, what, &source_name)?
        }
        SecretSource::Env(name) => match env(name) {
            Some(value) => Zeroizing::new(value),
            None => {
                return Err(SecretReadError::Missing {
                    what,
                    hint: hint.to_owned(),
                })
            }
        },
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(SecretReadError::Empty { what, source_name });
    }
    Ok(SecretString::new(trimmed.to_owned()))
}

fn bytes_to_text(
    bytes: &[u8],
    what: &'static str,
    source_name: &str,
) -> Result<Zeroizing<String>, SecretReadError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(SecretReadError::NotText {
            what,
            source_name: source_name.to_owned(),
        }),
    }
}

/// The process's environment, for [`read_secret`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const CONN: &str = "HostName=hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0a2V5MTIzNA==";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let secret = SecretString::new(CONN.to_owned());
        assert!(!format!("{secret:?}").contains("SharedAccessKey="));
        assert!(!format!("{secret}").contains("c2VjcmV0"));
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(secret.expose(), CONN);
    }

    #[test]
    fn reads_from_a_file_and_trims_the_line_end() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "{CONN}").unwrap();
        let source = SecretSource::from_flag(Some(file.path()), "X");
        let secret = read_secret(&source, "secret", "", &mut std::io::empty(), &no_env).unwrap();
        assert_eq!(secret.expose(), CONN);
    }

    #[test]
    fn dash_reads_standard_input() {
        let source = SecretSource::from_flag(Some(Path::new("-")), "X");
        assert_eq!(source, SecretSource::Stdin);
        let mut stdin = format!("  {CONN}\r\n").into_bytes();
        let secret = read_secret(&source, "secret", "", &mut stdin.as_slice(), &no_env).unwrap();
        assert_eq!(secret.expose(), CONN);
        stdin.clear();
    }

    #[test]
    fn no_flag_reads_the_environment_variable() {
        let source = SecretSource::from_flag(None, "IOTHUBGDR_IOTHUB_SECRET");
        let env = |name: &str| (name == "IOTHUBGDR_IOTHUB_SECRET").then(|| CONN.to_owned());
        let secret = read_secret(&source, "secret", "", &mut std::io::empty(), &env).unwrap();
        assert_eq!(secret.expose(), CONN);
    }

    #[test]
    fn missing_empty_and_unreadable_are_errors_that_name_the_source() {
        let missing = read_secret(
            &SecretSource::Env("IOTHUBGDR_IOTHUB_SECRET"),
            "IoT Hub connection string",
            "pass --secret-file",
            &mut std::io::empty(),
            &no_env,
        )
        .unwrap_err();
        assert!(missing.to_string().contains("pass --secret-file"));

        let empty = read_secret(
            &SecretSource::Stdin,
            "secret",
            "",
            &mut b"\n\n".as_slice(),
            &no_env,
        )
        .unwrap_err();
        assert!(matches!(empty, SecretReadError::Empty { .. }));

        let unreadable = read_secret(
            &SecretSource::File("/nonexistent/secret".into()),
            "secret",
            "",
            &mut std::io::empty(),
            &no_env,
        )
        .unwrap_err();
        assert!(unreadable.to_string().contains("/nonexistent/secret"));
    }

    #[test]
    fn binary_content_is_refused_without_echoing_it() {
        let err = read_secret(
            &SecretSource::Stdin,
            "secret",
            "",
            &mut [0xff, 0xfe, b'k', b'e', b'y'].as_slice(),
            &no_env,
        )
        .unwrap_err();
        assert!(matches!(err, SecretReadError::NotText { .. }));
        assert!(!err.to_string().contains("key"));
    }
}
