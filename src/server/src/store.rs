//! The circle's store in the embedded executor: the `redb` file under
//! `data_dir`, or memory when none is given (see `docs/STORE.md`).

use circle_executor::store::Store;

use crate::config::ServerConfig;
use crate::error::ServerError;

/// The file the store lives in, inside `ServerConfig::data_dir`.
pub(crate) const STORE_FILE: &str = "store.redb";

/// Opens the store `config` asks for, with its admin keys and limits.
pub(crate) fn open_store(config: &ServerConfig) -> Result<Store, ServerError> {
    let store = match &config.data_dir {
        Some(dir) => Store::open_file(dir.join(STORE_FILE))?,
        None => {
            // Info, not a warning: a library default (tests, examples, embedders with a
            // store of their own). `circle-server` warns, since an operator may not know.
            tracing::info!(
                "no data_dir: the circle's store is kept in memory and lost when the server stops"
            );
            Store::in_memory()
        }
    };
    let store = store
        .with_admin_keys(&config.admin_keys)?
        .with_limits(config.store_limits.clone());
    tracing::info!(store = %store.describe(), admin_keys = config.admin_keys.len(), "circle store open");
    Ok(store)
}
