//! The directory store: one file per token, in nats-server's `DirJWTStore` layout, so either
//! server can use the other's directory.
//!
//! - Flat: `<dir>/<key>.jwt`. Sharded: `<dir>/<last two characters of key>/<key>.jwt`.
//!   Activations are keyed by their hash, which ends in `=`, so they land in the `==` shard.
//! - A file holds exactly the token (no newline), written 0640 in directories made 0750, as
//!   nats-server does.
//!
//! What this module owns: the layout (which path a key has, which files are tokens), reading
//! token files, and [`DirBackend`], which writes them atomically (temporary file in the same
//! directory, fsync, rename, fsync of the directory) for a writable store. Watching a
//! read-only directory is [`super::dirwatch`]'s job.
//!
//! Sequence numbers and lineage. The files carry no change log, so sequence numbers are given
//! at load, in file-name order (deterministic), and the log then lives in the index.
//! - A **read-only** directory gets a new lineage id per process start: its numbering starts
//!   over each time, and a new lineage is what makes replicas resync (newer-wins) instead of
//!   trusting a cursor into a numbering that no longer exists.
//! - A **writable** directory keeps its lineage in `<dir>/.nas-store.json`, with a reserved
//!   sequence floor: every sequence handed out is below the floor persisted on disk, and a
//!   restart numbers the loaded files above it. A replica's cursor therefore always points into
//!   the same numbering, a restart re-sends every token once (no-ops for an up-to-date
//!   replica) and never skips a change. The file also keeps the other metadata (a replica's
//!   cursor when this store backs a replica). nats-server only reads `*.jwt` files, so the
//!   dot-file does not disturb it.
//!
//! Keys are checked before any path is built: only account public keys and activation hashes
//! (base32, no `/` or `.`) name files, so nothing can escape the directory whatever the caller
//! validated.

use super::{Backend, Commit, Kind, Loaded, StoreError};
use crate::jwt::{self, ClaimType, Claims};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

/// File extension of token files.
const EXT: &str = ".jwt";
/// Name of the metadata file of a writable directory store.
pub const META_FILE: &str = ".nas-store.json";
/// Directory and file modes nats-server uses for its directory store.
const DIR_MODE: u32 = 0o750;
const FILE_MODE: u32 = 0o640;
/// How far past the head the persisted sequence floor is moved when it is reached: one small
/// metadata write per this many sequence numbers.
const SEQ_RESERVE: u64 = 1 << 16;

/// Where tokens live in a directory store.
#[derive(Debug, Clone)]
pub struct DirLayout {
    root: PathBuf,
    shard: bool,
}

/// What a key names, from its shape: account public keys start with `A`, activation hashes are
/// padded base32 (they end with `=`). `None` for anything else.
pub fn kind_of_key(key: &str) -> Option<Kind> {
    if jwt::is_account_key(key) {
        Some(Kind::Account)
    } else if jwt::is_activation_hash(key) {
        Some(Kind::Activation)
    } else {
        None
    }
}

impl DirLayout {
    /// The layout of `root`, sharded or flat.
    pub fn new(root: &Path, shard: bool) -> DirLayout {
        DirLayout {
            root: root.to_path_buf(),
            shard,
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether keys are sharded by their last two characters.
    pub fn sharded(&self) -> bool {
        self.shard
    }

    /// The file that holds `key`.
    ///
    /// # Errors
    /// [`StoreError::Io`] when `key` is not an account public key or an activation hash: such a
    /// key never names a file, so no caller can make a path leave the directory.
    pub fn path_for(&self, key: &str) -> Result<PathBuf, StoreError> {
        let refuse = || {
            StoreError::Io(format!(
                "refusing to store key {key:?}: not an account public key or activation hash"
            ))
        };
        kind_of_key(key).ok_or_else(refuse)?;
        let file = format!("{key}{EXT}");
        // Belt and braces: the shape checks above already exclude separators and dots.
        let single = |s: &str| {
            let mut c = Path::new(s).components();
            matches!((c.next(), c.next()), (Some(Component::Normal(_)), None))
        };
        if !single(&file) {
            return Err(refuse());
        }
        Ok(if self.shard {
            let shard = &key[key.len() - 2..];
            if !single(shard) {
                return Err(refuse());
            }
            self.root.join(shard).join(file)
        } else {
            self.root.join(file)
        })
    }

    /// The key whose file `path` is, when `path` is exactly where this layout puts one.
    pub fn key_of(&self, path: &Path) -> Option<(Kind, String)> {
        let key = path.file_name()?.to_str()?.strip_suffix(EXT)?;
        let kind = kind_of_key(key)?;
        (self.path_for(key).ok()? == path).then(|| (kind, key.to_string()))
    }

    /// Every token file, as `(kind, key, path)` sorted by key. Files that look like tokens but
    /// sit in the wrong place (a flat file in a sharded store, a wrong shard) are logged and
    /// left out: nats-server would not find them either.
    ///
    /// # Errors
    /// Reading the directory failed.
    pub fn token_files(&self) -> io::Result<Vec<(Kind, String, PathBuf)>> {
        let mut found = Vec::new();
        self.collect(&self.root, true, &mut found)?;
        found.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(found)
    }

    /// Token files in `dir` (the root or a shard directory), for a directory that just appeared.
    ///
    /// # Errors
    /// Reading the directory failed.
    pub fn token_files_under(&self, dir: &Path) -> io::Result<Vec<(Kind, String, PathBuf)>> {
        let mut found = Vec::new();
        if dir == self.root {
            return self.token_files();
        }
        if self.shard && dir.parent() == Some(&self.root) {
            self.collect(dir, false, &mut found)?;
        }
        Ok(found)
    }

    fn collect(
        &self,
        dir: &Path,
        is_root: bool,
        found: &mut Vec<(Kind, String, PathBuf)>,
    ) -> io::Result<()> {
        let mut subdirs_with_tokens = false;
        for item in fs::read_dir(dir)? {
            let item = item?;
            let path = item.path();
            let file_type = item.file_type()?;
            if file_type.is_dir() {
                if is_root && self.shard {
                    self.collect(&path, false, found)?;
                } else if is_root && !subdirs_with_tokens {
                    subdirs_with_tokens = has_token_files(&path);
                }
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(key) = name.strip_suffix(EXT) else {
                continue;
            };
            match self.key_of(&path) {
                Some((kind, key)) => found.push((kind, key, path)),
                None if kind_of_key(key).is_some() => tracing::warn!(
                    path = %path.display(),
                    sharded = self.shard,
                    "token file is not where this store's layout puts its key; ignored"
                ),
                None => tracing::warn!(
                    path = %path.display(),
                    "file is not named by an account public key or activation hash; ignored"
                ),
            }
        }
        if subdirs_with_tokens {
            tracing::warn!(dir = %dir.display(), "directory store has subdirectories with .jwt files; if it is sharded, enable `shard`");
        }
        Ok(())
    }

    /// Reads the token file of `key` and checks that it is the token of `kind` for `key`.
    ///
    /// # Errors
    /// Why the file is not that token (unreadable, not a JWT, another type or key).
    pub fn read(&self, kind: Kind, key: &str, path: &Path) -> Result<TokenFile, String> {
        let token = read_token_file(path)?;
        if token.kind != kind || token.key != key {
            return Err(format!(
                "the file holds the {} token of {}, not of {key}",
                token.kind.as_str(),
                token.key
            ));
        }
        Ok(token)
    }
}

fn has_token_files(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|items| {
        items
            .flatten()
            .any(|i| i.file_name().to_string_lossy().ends_with(EXT))
    })
}

/// A token read from a file, not yet verified.
#[derive(Debug, Clone)]
pub struct TokenFile {
    /// Account or activation, from the token's type.
    pub kind: Kind,
    /// The key it is stored under: the account's public key or the activation's hash.
    pub key: String,
    /// The token text, without surrounding whitespace.
    pub text: String,
    /// Its claims.
    pub claims: Claims,
}

/// Reads a token file and works out what it is from its claims.
///
/// # Errors
/// Why the file is not an account or activation token.
pub fn read_token_file(path: &Path) -> Result<TokenFile, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    identify(text.trim())
}

/// Works out what a token is and the key it belongs under.
///
/// # Errors
/// Why the text is not an account or activation token.
pub fn identify(text: &str) -> Result<TokenFile, String> {
    let claims = jwt::parse_unverified(text).map_err(|e| e.to_string())?;
    let (kind, key) = match claims.claim_type() {
        ClaimType::Account if jwt::is_account_key(&claims.sub) => {
            (Kind::Account, claims.sub.clone())
        }
        ClaimType::Account => {
            return Err(format!(
                "account subject {:?} is not an account key",
                claims.sub
            ))
        }
        ClaimType::Activation => (
            Kind::Activation,
            jwt::activation_hash(&claims).map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("a {other} JWT, not an account or activation")),
    };
    Ok(TokenFile {
        kind,
        key,
        text: text.to_string(),
        claims,
    })
}

/// Metadata of a writable directory store, persisted in [`META_FILE`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MetaFile {
    /// Every sequence number handed out so far is at most this.
    seq_reserved: u64,
    /// Store metadata (lineage id, replica cursors), values hex-encoded.
    meta: BTreeMap<String, String>,
}

/// A directory of `.jwt` files as a [`Backend`].
pub struct DirBackend {
    layout: DirLayout,
    writable: bool,
    /// The persisted metadata. A `Mutex` only because `Backend` methods take `&self`: `load`
    /// runs before the writer thread exists and `commit` runs on it alone, so it is never
    /// contended; never held across an `.await` (there are none here).
    meta: Mutex<MetaFile>,
    /// A deleted account's file is removed; otherwise renamed `<key>.jwt.deleted`, as
    /// nats-server's full resolver does by default.
    hard_delete: bool,
}

impl DirBackend {
    /// Opens a directory store. A writable one is created (0750) when missing; a read-only one
    /// must exist.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directory is missing (read-only), cannot be created, or its
    /// metadata file is unreadable.
    pub fn open(root: &Path, shard: bool, writable: bool) -> Result<DirBackend, StoreError> {
        let io = |what: &str, e: io::Error| {
            StoreError::Io(format!("{what} directory store {}: {e}", root.display()))
        };
        if writable {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(root)
                .map_err(|e| io("creating", e))?;
        }
        if !fs::metadata(root).map_err(|e| io("opening", e))?.is_dir() {
            return Err(StoreError::Io(format!(
                "directory store {} is not a directory",
                root.display()
            )));
        }
        let meta = if writable {
            match fs::read(root.join(META_FILE)) {
                Ok(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                    key: META_FILE.into(),
                    reason: e.to_string(),
                })?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => MetaFile::default(),
                Err(e) => return Err(io("reading metadata of", e)),
            }
        } else {
            MetaFile::default()
        };
        let layout = DirLayout::new(root, shard);
        if writable {
            remove_stale_temp_files(&layout);
        }
        Ok(DirBackend {
            layout,
            writable,
            meta: Mutex::new(meta),
            hard_delete: false,
        })
    }

    /// Removes deleted accounts' files instead of renaming them `.jwt.deleted`
    /// (`store.deletemode = "hard"`).
    pub fn with_hard_delete(mut self, hard: bool) -> DirBackend {
        self.hard_delete = hard;
        self
    }

    /// The layout (for the watcher).
    pub fn layout(&self) -> &DirLayout {
        &self.layout
    }

    fn write_meta(&self, meta: &MetaFile) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(meta).map_err(|e| StoreError::Io(e.to_string()))?;
        let path = self.layout.root.join(META_FILE);
        write_atomic(&path, &bytes).map_err(|e| io_at(&path, e))?;
        sync_dir(&self.layout.root).map_err(|e| io_at(&self.layout.root, e))
    }

    fn lock_meta(&self) -> std::sync::MutexGuard<'_, MetaFile> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn io_at(path: &Path, e: io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

impl Backend for DirBackend {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let files = self
            .layout
            .token_files()
            .map_err(|e| io_at(&self.layout.root, e))?;
        let mut loaded = Loaded::default();
        let mut meta = self.lock_meta();
        // Number above everything handed out before (writable) or from 1 (read-only: a new
        // lineage every start, see the module doc).
        let base = if self.writable { meta.seq_reserved } else { 0 };
        let mut seq = base;
        for (kind, key, path) in files {
            match self.layout.read(kind, &key, &path) {
                Ok(token) => {
                    seq += 1;
                    loaded.push(kind, &key, token.text.as_bytes(), seq)?;
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "skipping a file that is not a token for its name")
                }
            }
        }
        if self.writable {
            for (name, hex) in &meta.meta {
                let value = data_encoding::HEXLOWER
                    .decode(hex.as_bytes())
                    .map_err(|e| StoreError::Corrupt {
                        key: format!("{META_FILE}:{name}"),
                        reason: e.to_string(),
                    })?;
                loaded.meta.insert(name.clone(), value);
            }
            // Persist the new floor before any of these numbers is served.
            let mut next = meta.clone();
            next.seq_reserved = seq + SEQ_RESERVE;
            self.write_meta(&next)?;
            *meta = next;
        }
        loaded
            .meta
            .insert(super::sled::META_HEAD.into(), seq.to_be_bytes().to_vec());
        Ok(loaded)
    }

    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        // Records first, made durable with their directories, and only then the metadata: a
        // replica cursor must never be on disk ahead of the tokens it covers.
        let mut dirs = BTreeSet::new();
        for r in &commit.records {
            let path = self.layout.path_for(&r.key)?;
            let dir = path.parent().unwrap_or(&self.layout.root).to_path_buf();
            if r.deleted {
                let gone = if self.hard_delete {
                    fs::remove_file(&path)
                } else {
                    let mut renamed = path.clone().into_os_string();
                    renamed.push(".deleted");
                    fs::rename(&path, renamed)
                };
                match gone {
                    Ok(()) => {
                        dirs.insert(dir);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_at(&path, e)),
                }
                continue;
            }
            if !dir.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(&dir)
                    .map_err(|e| io_at(&dir, e))?;
                // The new shard directory's own entry lives in the root.
                dirs.insert(self.layout.root.clone());
            }
            write_atomic(&path, &r.jwt).map_err(|e| io_at(&path, e))?;
            dirs.insert(dir);
        }
        for dir in &dirs {
            sync_dir(dir).map_err(|e| io_at(dir, e))?;
        }
        let mut meta = self.lock_meta();
        if commit.meta.is_empty() && commit.head <= meta.seq_reserved {
            return Ok(());
        }
        let mut next = meta.clone();
        for (name, value) in &commit.meta {
            next.meta
                .insert(name.clone(), data_encoding::HEXLOWER.encode(value));
        }
        if commit.head > next.seq_reserved {
            next.seq_reserved = commit.head + SEQ_RESERVE;
        }
        self.write_meta(&next)?;
        *meta = next;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "dir"
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it (its name does not end in
/// `.jwt`, so no reader takes it for a token), fsync, then rename over `path`. The caller
/// fsyncs the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes temporary files that [`write_atomic`] left behind when its process died between
/// creating and renaming one (`kill -9`, power loss). They are never read as tokens, but would
/// pile up. Only files of processes that are no longer running are removed: a temporary file
/// of a live writer is about to be renamed.
fn remove_stale_temp_files(layout: &DirLayout) {
    let mut dirs = vec![layout.root.clone()];
    if layout.shard {
        if let Ok(entries) = fs::read_dir(&layout.root) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(temp_file_pid) else {
                continue;
            };
            if pid != std::process::id() && process_is_running(pid) {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a temporary file left by an interrupted write")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), cause = %e, "cannot remove a temporary file left by an interrupted write")
                }
            }
        }
    }
}

/// The writer's pid, when `name` is a temporary file of [`write_atomic`]
/// (`.<key>.jwt.tmp-<pid>`).
fn temp_file_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (file, pid) = rest.rsplit_once(".tmp-")?;
    file.ends_with(EXT).then_some(())?;
    pid.parse().ok()
}

/// Whether a process with this pid exists (Linux: `/proc/<pid>`; elsewhere, assume it does,
/// which keeps the file).
fn process_is_running(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// fsync of a directory, which makes renames and new entries in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a directory store for an import: every token file with its key, without checking
/// anything beyond the layout.
///
/// # Errors
/// Reading the directory failed.
pub fn read_all(root: &Path, shard: bool) -> io::Result<Vec<(String, Result<String, String>)>> {
    let layout = DirLayout::new(root, shard);
    let mut out = Vec::new();
    for (_, key, path) in layout.token_files()? {
        let text = fs::read(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|b| {
                String::from_utf8(b).map_err(|_| format!("{} is not UTF-8 text", path.display()))
            })
            .map(|t| t.trim().to_string());
        out.push((key, text));
    }
    Ok(out)
}
