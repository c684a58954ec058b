//! The database file on disk: its folder (0700), its files (0600), and its identity, so
//! readiness notices a file that was deleted or replaced under open connections.

use std::path::{Path, PathBuf};

use iothubgdr_store::{StoreError, StoreResult};

/// A database file and its identity when it was opened. Open connections keep working on a
/// file that was deleted or replaced, writing where nobody will read again: readiness
/// checks that the path still names the same file.
#[derive(Debug, Clone)]
pub(crate) struct OpenedFile {
    pub(crate) path: PathBuf,
    pub(crate) identity: FileIdentity,
}

#[cfg(unix)]
pub(crate) type FileIdentity = (u64, u64);
#[cfg(not(unix))]
pub(crate) type FileIdentity = ();

pub(crate) fn file_identity(path: &Path) -> std::io::Result<FileIdentity> {
    let metadata = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok((metadata.dev(), metadata.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        Ok(())
    }
}

pub(crate) fn create_parent_dir(file: &Path) -> StoreResult<()> {
    // `:memory:` and bare file names have no directory to create.
    if let Some(parent) = file.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            // Only the service's user may enter the folder that holds the database.
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(parent).map_err(|err| StoreError::Backend {
                context: format!("cannot create the database directory {}", parent.display()),
                source: Some(Box::new(err)),
            })?;
        }
    }
    Ok(())
}

/// Makes the database file and its `-wal`/`-shm` companions readable by the service's user
/// only. New files already are when the process runs with umask 077 (the binary sets it);
/// this also tightens files left world-readable by an older version or another umask.
pub(crate) fn restrict_database_files(file: &Path) -> StoreResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let name = file.as_os_str().to_string_lossy();
        for path in [
            name.to_string(),
            format!("{name}-wal"),
            format!("{name}-shm"),
        ] {
            let path = Path::new(&path);
            match std::fs::metadata(path) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|err| StoreError::Backend {
                            context: format!("cannot make {} private", path.display()),
                            source: Some(Box::new(err)),
                        })?;
                }
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}
