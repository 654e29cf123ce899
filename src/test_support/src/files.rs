//! Temporary files for tests.

use std::path::{Path, PathBuf};

/// A temporary folder whose files live as long as it does.
pub struct TempFiles {
    dir: tempfile::TempDir,
}

impl TempFiles {
    /// A new, empty folder.
    pub fn new() -> TempFiles {
        TempFiles {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where a file called `name` is (or would be) in the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name` in the folder and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }
}

impl Default for TempFiles {
    fn default() -> Self {
        TempFiles::new()
    }
}
