//! The embedded store: one `redb` file (or `redb`'s in-memory backend).
//!
//! Two tables: `entries`, keyed by (namespace, key), holding the JSON text; and `usage`,
//! holding the keys of each caller namespace (`keys:{namespace}`) and the bytes of the
//! whole circle (`bytes`), kept in the same transactions as the entries so the limits
//! are checked against exactly what is stored.
//!
//! A commit is one `redb` write transaction with `Durability::Immediate` (redb's
//! default): it returns once its pages and the new root are fsync'd, and redb's
//! copy-on-write pages with a checksummed double root leave the last committed state
//! after a crash at any moment. Write transactions are serialised by redb, so two plays
//! writing one key commit one after the other: the last commit wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Backend, Namespace, Session, StoreError, StoreLimits, Writes};
use crate::LimitKind;

const ENTRIES: TableDefinition<(&str, &str), &str> = TableDefinition::new("entries");
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
/// The `usage` row of the circle's total bytes.
const BYTES: &str = "bytes";

/// The store files this process has open, by canonical path. redb refuses to open a file
/// twice, also within one process, so a server restarted in the same process (an embedder,
/// a test) while the old one's script threads still wind down, or two servers on one data
/// directory, share the open database: the same data, writes serialised by redb. Another
/// process is still refused by redb's file lock.
static OPEN_FILES: Mutex<Option<HashMap<PathBuf, Weak<Database>>>> = Mutex::new(None);

fn keys_row(namespace: &str) -> String {
    format!("keys:{namespace}")
}

fn unavailable(err: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(err.into().to_string())
}

pub(super) struct FileBackend {
    database: Arc<Database>,
    what: String,
}

impl FileBackend {
    pub(super) fn open(path: &Path) -> Result<FileBackend, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        create_private_dir(folder).map_err(|err| open_error(err.to_string()))?;
        let file_name = path
            .file_name()
            .ok_or_else(|| open_error("not a file name".to_owned()))?;
        let canonical = folder
            .canonicalize()
            .map_err(|err| open_error(err.to_string()))?
            .join(file_name);
        let mut open_files = OPEN_FILES.lock().unwrap_or_else(|e| e.into_inner());
        let open_files = open_files.get_or_insert_with(HashMap::new);
        open_files.retain(|_, database| database.strong_count() > 0);
        if let Some(database) = open_files.get(&canonical).and_then(Weak::upgrade) {
            return Ok(FileBackend {
                database,
                what: format!("file {}", path.display()),
            });
        }
        let database = Database::create(path).map_err(|err| match err {
            redb::DatabaseError::DatabaseAlreadyOpen => open_error(
                "another process has it open (one circle-server per data directory)".to_owned(),
            ),
            other => open_error(other.to_string()),
        })?;
        create_tables(&database).map_err(|err| open_error(err.to_string()))?;
        let database = Arc::new(database);
        open_files.insert(canonical, Arc::downgrade(&database));
        Ok(FileBackend {
            database,
            what: format!("file {}", path.display()),
        })
    }

    pub(super) fn in_memory() -> FileBackend {
        let database = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .expect("redb's in-memory backend cannot fail to open");
        create_tables(&database).expect("redb's in-memory backend cannot fail to write");
        FileBackend {
            database: Arc::new(database),
            what: "memory".to_owned(),
        }
    }
}

/// The store's folder, readable by its owner only (it holds every caller's data).
fn create_private_dir(folder: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder)
}

/// Creates both tables, so that reads never find them missing.
fn create_tables(database: &Database) -> Result<(), redb::Error> {
    let txn = database.begin_write()?;
    txn.open_table(ENTRIES)?;
    txn.open_table(USAGE)?;
    txn.commit()?;
    Ok(())
}

impl Backend for FileBackend {
    fn session(&self) -> Result<Box<dyn Session>, StoreError> {
        Ok(Box::new(FileSession {
            database: Arc::clone(&self.database),
        }))
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

struct FileSession {
    database: Arc<Database>,
}

impl Session for FileSession {
    fn get(&mut self, namespace: &Namespace, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.database.begin_read().map_err(unavailable)?;
        let table = txn.open_table(ENTRIES).map_err(unavailable)?;
        let name = namespace.storage_name();
        let found = table
            .get((name.as_str(), key))
            .map_err(unavailable)?
            .map(|value| value.value().to_owned());
        Ok(found)
    }

    fn keys(
        &mut self,
        namespace: &Namespace,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        let txn = self.database.begin_read().map_err(unavailable)?;
        let table = txn.open_table(ENTRIES).map_err(unavailable)?;
        let name = namespace.storage_name();
        let mut keys = Vec::new();
        for item in table
            .range((name.as_str(), prefix)..)
            .map_err(unavailable)?
        {
            let (entry, _) = item.map_err(unavailable)?;
            let (entry_namespace, key) = entry.value();
            if entry_namespace != name || !key.starts_with(prefix) || keys.len() == max {
                break;
            }
            keys.push(key.to_owned());
        }
        Ok(keys)
    }

    fn commit(&mut self, writes: &Writes, limits: &StoreLimits) -> Result<(), StoreError> {
        let txn = self.database.begin_write().map_err(unavailable)?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(unavailable)?;
            let mut usage = txn.open_table(USAGE).map_err(unavailable)?;
            let mut bytes_delta: i64 = 0;
            // Per caller namespace written: how its key count changes. Only growth is
            // refused, so lowering the limit never locks a caller out of removing keys.
            let mut counts: Vec<(String, i64)> = Vec::new();
            for ((namespace, key), value) in writes {
                let name = namespace.storage_name();
                let old = entries
                    .get((name.as_str(), key.as_str()))
                    .map_err(unavailable)?
                    .map(|old| old.value().len());
                let key_delta = match (old, value) {
                    (None, Some(_)) => 1,
                    (Some(_), None) => -1,
                    _ => 0,
                };
                if let Some(old_len) = old {
                    bytes_delta -= (key.len() + old_len) as i64;
                }
                match value {
                    Some(json) => {
                        bytes_delta += (key.len() + json.len()) as i64;
                        entries
                            .insert((name.as_str(), key.as_str()), json.as_str())
                            .map_err(unavailable)?;
                    }
                    None => {
                        entries
                            .remove((name.as_str(), key.as_str()))
                            .map_err(unavailable)?;
                    }
                }
                if namespace.is_caller() && key_delta != 0 {
                    match counts.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, delta)) => *delta += key_delta,
                        None => counts.push((name, key_delta)),
                    }
                }
            }
            for (name, delta) in &counts {
                let row = keys_row(name);
                let before = usage
                    .get(row.as_str())
                    .map_err(unavailable)?
                    .map_or(0, |v| v.value());
                let after = (before as i64 + delta).max(0) as u64;
                if *delta > 0 && after > limits.max_keys_per_caller as u64 {
                    // Dropping `txn` unapplied aborts every write of the play.
                    return Err(limits.refusal(
                        LimitKind::StoreKeys,
                        &format!("the play would leave {after} keys in the caller's namespace"),
                    ));
                }
                usage.insert(row.as_str(), after).map_err(unavailable)?;
            }
            let before = usage
                .get(BYTES)
                .map_err(unavailable)?
                .map_or(0, |v| v.value());
            let after = (before as i64 + bytes_delta).max(0) as u64;
            if bytes_delta > 0 && after > limits.max_circle_bytes {
                return Err(limits.refusal(
                    LimitKind::StoreBytes,
                    &format!("the play would bring the circle's store to {after} bytes"),
                ));
            }
            usage.insert(BYTES, after).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)
    }
}
