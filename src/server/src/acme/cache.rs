//! The cache folder: the account's credentials and the certificates, per
//! CA, in files only the server's user can read; and the lock that lets
//! several servers share the folder.
//!
//! Layout: `<cache>/<ca>/account.json` (the account key: secret),
//! `<cache>/<ca>/<domains>.crt.pem` (chain, leaf first) and
//! `<cache>/<ca>/<domains>.key.pem` (its key: secret), and `<cache>/lock`.
//! `<ca>` is the directory URL's host and port, `<domains>` the names
//! joined by `+`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::AcmeError;

/// The cache of one CA and one set of domains.
#[derive(Clone, Debug)]
pub(crate) struct AcmeCache {
    root: PathBuf,
    folder: PathBuf,
    name: String,
}

fn cache_error(path: &Path) -> impl FnOnce(std::io::Error) -> AcmeError + '_ {
    move |source| AcmeError::Cache {
        path: path.to_owned(),
        source,
    }
}

fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl AcmeCache {
    /// The cache under `root` for the CA at `directory_url` and `domains`.
    pub fn new(root: &Path, directory_url: &str, domains: &[String]) -> Self {
        let authority = directory_url
            .split_once("://")
            .map_or(directory_url, |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default();
        AcmeCache {
            root: root.to_owned(),
            folder: root.join(file_safe(authority)),
            name: file_safe(&domains.join("+")),
        }
    }

    /// Creates the folders (0700) when missing.
    pub fn create(&self) -> Result<(), AcmeError> {
        for folder in [&self.root, &self.folder] {
            std::fs::create_dir_all(folder).map_err(cache_error(folder))?;
            restrict(folder, 0o700)?;
        }
        Ok(())
    }

    /// The account credentials file.
    pub fn account_path(&self) -> PathBuf {
        self.folder.join("account.json")
    }

    /// The certificate chain file.
    pub fn certificate_path(&self) -> PathBuf {
        self.folder.join(format!("{}.crt.pem", self.name))
    }

    /// The certificate's key file.
    pub fn key_path(&self) -> PathBuf {
        self.folder.join(format!("{}.key.pem", self.name))
    }

    /// Reads a cached file; `None` when it does not exist.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, AcmeError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(cache_error(path)(error)),
        }
    }

    /// Writes `bytes` to `path` (0600) through a temporary file and a
    /// rename, so a reader never sees half a file.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary).map_err(cache_error(&temporary))?;
        restrict(&temporary, 0o600)?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(cache_error(&temporary))?;
        std::fs::rename(&temporary, path).map_err(cache_error(path))
    }

    /// Takes the folder's lock, waiting up to `patience` for another
    /// server that holds it. Dropping the guard releases it.
    pub async fn lock(&self, patience: Duration) -> Result<CacheLock, AcmeError> {
        let path = self.root.join("lock");
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(cache_error(&path))?;
        let deadline = Instant::now() + patience;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(CacheLock(file)),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(AcmeError::Cache {
                        path,
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "another server holds the lock",
                        ),
                    });
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(AcmeError::Cache { path, source });
                }
            }
        }
    }
}

/// The cache folder's lock, held while an order runs.
#[derive(Debug)]
pub(crate) struct CacheLock(File);

impl Drop for CacheLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> Result<(), AcmeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(cache_error(path))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> Result<(), AcmeError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_per_ca_and_domains() {
        let cache = AcmeCache::new(
            Path::new("/c"),
            "https://127.0.0.1:14000/dir",
            &["a.example".into(), "b.example".into()],
        );
        assert_eq!(
            cache.account_path(),
            Path::new("/c/127.0.0.1_14000/account.json")
        );
        assert_eq!(
            cache.certificate_path(),
            Path::new("/c/127.0.0.1_14000/a.example_b.example.crt.pem")
        );
    }
}
