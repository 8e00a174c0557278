//! The nsc store: an operator folder that `nsc` manages, served read-only.
//!
//! ```text
//! <stores root>/<Operator>/          # --nsc points here
//!   .nsc                             # nsc's marker (required, as nsc's own LoadStore does)
//!   <Operator>.jwt                   # the operator (config::Settings::operator_path)
//!   accounts/<Name>/<Name>.jwt       # account JWTs, served by their public key
//!   accounts/<Name>/users/…          # users: never served
//! ```
//!
//! Each account file is parsed once, at load or when the watcher ([`super::dirwatch`]) sees it
//! change; requests are answered from the index by public key, never by scanning the folder.
//! Sequence numbers are given in account-name order and the lineage is new per process start,
//! as for a read-only directory store (see [`super::dir`]). Keys (nkeys, seeds) live elsewhere
//! and are never read.

use super::dir::{identify, TokenFile};
use super::{Backend, Commit, Kind, Loaded, StoreError};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where account tokens live in an nsc operator folder.
#[derive(Debug, Clone)]
pub struct NscLayout {
    root: PathBuf,
}

impl NscLayout {
    /// The layout of the operator folder `root`.
    pub fn new(root: &Path) -> NscLayout {
        NscLayout {
            root: root.to_path_buf(),
        }
    }

    /// The operator folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn accounts(&self) -> PathBuf {
        self.root.join("accounts")
    }

    /// Whether `path` is where nsc keeps an account JWT: `accounts/<Name>/<Name>.jwt`.
    pub fn is_account_file(&self, path: &Path) -> bool {
        let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let Some(name) = dir.file_name() else {
            return false;
        };
        dir.parent() == Some(self.accounts().as_path())
            && file.to_string_lossy() == format!("{}.jwt", name.to_string_lossy())
    }

    /// Every account file, sorted by account name.
    ///
    /// # Errors
    /// Reading `accounts/` failed (a folder without it has no accounts yet: empty).
    pub fn account_files(&self) -> io::Result<Vec<PathBuf>> {
        let items = match fs::read_dir(self.accounts()) {
            Ok(items) => items,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for item in items {
            let item = item?;
            if !item.file_type()?.is_dir() {
                continue;
            }
            let name = item.file_name();
            let file = item.path().join(format!("{}.jwt", name.to_string_lossy()));
            if file.is_file() {
                found.push(file);
            }
        }
        found.sort();
        Ok(found)
    }

    /// Account files under `dir` (the folder, `accounts/`, or one account's folder), for a
    /// directory that just appeared.
    ///
    /// # Errors
    /// Reading the directory failed.
    pub fn account_files_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        if dir == self.root || dir == self.accounts() {
            return self.account_files();
        }
        if dir.parent() == Some(self.accounts().as_path()) {
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            let file = dir.join(format!("{name}.jwt"));
            return Ok(if file.is_file() { vec![file] } else { vec![] });
        }
        Ok(Vec::new())
    }

    /// Reads an account file; the key is the account's public key from its claims.
    ///
    /// # Errors
    /// Why the file is not an account JWT.
    pub fn read(&self, path: &Path) -> Result<TokenFile, String> {
        let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let token = identify(text.trim())?;
        if token.kind != Kind::Account {
            return Err("not an account JWT".into());
        }
        Ok(token)
    }
}

/// An nsc operator folder as a read-only [`Backend`].
pub struct NscBackend {
    layout: NscLayout,
}

impl NscBackend {
    /// Opens the operator folder `root`.
    ///
    /// # Errors
    /// [`StoreError::Io`] when `root` is not an nsc operator folder (no `.nsc` file).
    pub fn open(root: &Path) -> Result<NscBackend, StoreError> {
        if !root.join(".nsc").is_file() {
            return Err(StoreError::Io(format!(
                "{} is not an nsc operator folder (no .nsc file); point nsc at <stores root>/<operator name>",
                root.display()
            )));
        }
        Ok(NscBackend {
            layout: NscLayout::new(root),
        })
    }
}

impl Backend for NscBackend {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let files = self
            .layout
            .account_files()
            .map_err(|e| StoreError::Io(format!("{}: {e}", self.layout.root.display())))?;
        // Two folders can hold the same account (a copy under another name): the newer wins.
        let mut by_key: HashMap<String, (usize, TokenFile)> = HashMap::new();
        for (order, path) in files.iter().enumerate() {
            match self.layout.read(path) {
                Ok(token) => match by_key.get(&token.key) {
                    Some((_, kept)) if kept.claims.iat > token.claims.iat => {}
                    _ => {
                        by_key.insert(token.key.clone(), (order, token));
                    }
                },
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "skipping an account file that is not an account JWT")
                }
            }
        }
        let mut tokens: Vec<(usize, TokenFile)> = by_key.into_values().collect();
        tokens.sort_by_key(|(order, _)| *order);
        let mut loaded = Loaded::default();
        for (seq, (_, token)) in (1u64..).zip(tokens) {
            loaded.push(Kind::Account, &token.key, token.text.as_bytes(), seq)?;
        }
        Ok(loaded)
    }

    fn commit(&self, _commit: &Commit) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly)
    }

    fn name(&self) -> &'static str {
        "nsc"
    }
}
