//! Watching read-only file stores (a read-only directory store, an nsc folder) and feeding
//! their changes into the index, so edits made with `nsc`, `git pull`, `cp` or an editor are
//! served and notified to nats-server without a restart.
//!
//! How: a `notify` watcher (inotify on Linux) on the store's root, recursive, sends events into
//! a bounded queue; one task owns the rest. For every path an event names, it looks at the
//! file system as it is now instead of interpreting the event kind: a token file that exists
//! is read; a path that is gone drops whatever key that file provided; a directory that
//! appeared (a new shard, a new nsc account folder, one renamed into place) is scanned. So
//! create, modify, `write temp + rename` (git, editors, `nsc`), rename away and delete all come
//! out right, whatever order and granularity the events arrive in. A lost event (queue
//! overflow, inotify overflow, watcher error) triggers a full rescan, and so does the start:
//! the watch is registered first and the rescan then covers whatever changed since the store
//! was loaded.
//!
//! A changed file is applied only if its signature verifies: besides refusing garbage, this is
//! what keeps a file caught half-written out of the index; its completing write triggers
//! another event. A file that does not parse leaves the stored version in place.
//!
//! Deletions remove the key from the index (GET answers 404) but put nothing in the change
//! feed: replicas keep the token, as nats-server's PACK never deletes either, and nats-server
//! itself has no "account deleted" notification.
//!
//! Unlike the Go server, which only reacted to `Write` events and stopped on watcher errors,
//! every kind of change is picked up and errors cause a rescan, not an exit.

use super::dir::{DirLayout, TokenFile};
use super::nsc::NscLayout;
use super::{Entry, Kind, PutOutcome, Store, StoreError};
use crate::verify;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Events queued between the watcher thread and the task; beyond it, a rescan replaces them.
const QUEUE: usize = 4096;

/// The files a watched store mirrors.
#[derive(Debug, Clone)]
pub enum Source {
    /// A read-only directory store.
    Dir(DirLayout),
    /// An nsc operator folder.
    Nsc(NscLayout),
}

impl Source {
    /// A directory store at `root`. The root is made absolute, as the watcher reports paths.
    pub fn dir(root: &Path, shard: bool) -> Source {
        Source::Dir(DirLayout::new(&absolute(root), shard))
    }

    /// An nsc operator folder at `root`.
    pub fn nsc(root: &Path) -> Source {
        Source::Nsc(NscLayout::new(&absolute(root)))
    }

    /// The directory watched (recursively).
    pub fn root(&self) -> &Path {
        match self {
            Source::Dir(l) => l.root(),
            Source::Nsc(l) => l.root(),
        }
    }

    fn all_files(&self) -> io::Result<Vec<PathBuf>> {
        Ok(match self {
            Source::Dir(l) => l.token_files()?.into_iter().map(|(_, _, p)| p).collect(),
            Source::Nsc(l) => l.account_files()?,
        })
    }

    fn files_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(match self {
            Source::Dir(l) => l
                .token_files_under(dir)?
                .into_iter()
                .map(|(_, _, p)| p)
                .collect(),
            Source::Nsc(l) => l.account_files_under(dir)?,
        })
    }

    fn is_token_file(&self, path: &Path) -> bool {
        match self {
            Source::Dir(l) => l.key_of(path).is_some(),
            Source::Nsc(l) => l.is_account_file(path),
        }
    }

    /// The key a token file stands for without reading it (a directory store's file name).
    fn key_from_path(&self, path: &Path) -> Option<(Kind, String)> {
        match self {
            Source::Dir(l) => l.key_of(path),
            Source::Nsc(_) => None,
        }
    }

    fn read(&self, path: &Path) -> Result<TokenFile, String> {
        match self {
            Source::Dir(l) => {
                let (kind, key) = l
                    .key_of(path)
                    .ok_or_else(|| "not a token file of this store".to_string())?;
                l.read(kind, &key, path)
            }
            Source::Nsc(l) => l.read(path),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Starts watching `store`'s files, when it is a watched store ([`Store::open_watched`]);
/// `on_change` gets every entry a file change stored (the server passes the notifier). The
/// task stops on `cancel` and is tracked by `tasks`. Returns whether a watcher was started.
///
/// # Errors
/// [`StoreError::Io`] when the watch cannot be set up (missing directory, inotify limits).
pub fn spawn(
    store: &Store,
    on_change: impl Fn(Arc<Entry>) + Send + Sync + 'static,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> Result<bool, StoreError> {
    let Some(source) = store.watch_source() else {
        return Ok(false);
    };
    let (tx, rx) = mpsc::channel::<notify::Result<Event>>(QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    let lost = overflow.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| {
        // Our own reads of the files are reported as opens: ignore every access but the end of
        // a write, or each read would wake the task again.
        if let Ok(ev) = &res {
            if matches!(ev.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write))
            {
                return;
            }
        }
        if tx.try_send(res).is_err() {
            lost.store(true, Ordering::Relaxed);
        }
    })
    .map_err(|e| StoreError::Io(format!("starting the file watcher: {e}")))?;
    watcher
        .watch(source.root(), RecursiveMode::Recursive)
        .map_err(|e| StoreError::Io(format!("watching {}: {e}", source.root().display())))?;
    tracing::info!(root = %source.root().display(), "watching the store's files for changes");
    let store = store.clone();
    tasks.spawn(async move {
        // Dropping the watcher stops its thread; it lives exactly as long as this task.
        let _watcher = watcher;
        run(store, source, rx, overflow, on_change, cancel).await;
    });
    Ok(true)
}

async fn run(
    store: Store,
    source: Arc<Source>,
    mut rx: mpsc::Receiver<notify::Result<Event>>,
    overflow: Arc<AtomicBool>,
    on_change: impl Fn(Arc<Entry>),
    cancel: CancellationToken,
) {
    let mut mirror = Mirror {
        source,
        known: HashMap::new(),
        unsettled: HashMap::new(),
    };
    // The first pass is a full rescan: it learns which file holds which key and catches what
    // changed between the store's load and the watch's registration.
    let mut full = true;
    let mut pending = BTreeSet::new();
    loop {
        if full || !pending.is_empty() {
            let paths = std::mem::take(&mut pending);
            let s = store.clone();
            let scan = tokio::task::spawn_blocking(move || {
                let changes = if full {
                    mirror.rescan(&s)
                } else {
                    mirror.observe(paths, &s)
                };
                (mirror, changes)
            });
            full = false;
            match scan.await {
                Ok((m, changes)) => {
                    mirror = m;
                    apply(&store, changes, &on_change).await;
                }
                Err(e) => {
                    tracing::error!(cause = %e, "the store watcher failed; file changes are no longer picked up");
                    return;
                }
            }
        }
        let recheck = !mirror.unsettled.is_empty();
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => return,
            },
            _ = tokio::time::sleep(RECHECK_EVERY), if recheck => {
                mirror.unsettled.retain(|_, tries| *tries < RECHECK_TIMES);
                pending.extend(mirror.unsettled.keys().cloned());
                continue;
            }
        };
        let mut absorb = |ev: notify::Result<Event>| match ev {
            Ok(ev) => {
                full |= ev.need_rescan();
                pending.extend(ev.paths);
            }
            Err(e) => {
                tracing::warn!(cause = %e, "file watcher error; rescanning the store");
                full = true;
            }
        };
        absorb(first);
        // Fold everything already queued into one pass (one writer batch).
        while let Ok(ev) = rx.try_recv() {
            absorb(ev);
        }
        if overflow.swap(false, Ordering::Relaxed) {
            tracing::warn!("file events were lost (queue full); rescanning the store");
            full = true;
        }
    }
}

/// What one pass found.
#[derive(Default)]
struct Changes {
    upserts: Vec<Arc<Entry>>,
    removals: Vec<(Kind, String)>,
}

async fn apply(store: &Store, changes: Changes, on_change: &impl Fn(Arc<Entry>)) {
    if changes.upserts.is_empty() && changes.removals.is_empty() {
        return;
    }
    let removals = changes.removals.clone();
    match store
        .apply_external(changes.upserts, changes.removals)
        .await
    {
        Ok(outcomes) => {
            for outcome in outcomes {
                if let PutOutcome::Stored(entry) = outcome {
                    tracing::info!(kind = entry.kind.as_str(), key = %entry.key, seq = entry.seq, "token file changed; loaded");
                    on_change(entry);
                }
            }
            for (kind, key) in removals {
                tracing::info!(kind = kind.as_str(), %key, "token file removed; no longer served (replicas keep it)");
            }
        }
        Err(e) => tracing::warn!(cause = %e, "file changes could not be applied"),
    }
}

/// The watcher's view of the files: which key each token file provided. Owned by the watcher
/// task and moved into the blocking pool for each pass (file reads block).
struct Mirror {
    source: Arc<Source>,
    known: HashMap<PathBuf, (Kind, String)>,
    /// Token files that could not be used when looked at (most often caught mid-write: a file
    /// created in a directory that appeared an instant earlier can be written before the
    /// watch on that directory exists, so no later event would name it), with how many times
    /// they were looked at. They are looked at again shortly, a bounded number of times.
    unsettled: HashMap<PathBuf, u32>,
}

/// How often, and how many times, unusable token files are looked at again.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
const RECHECK_TIMES: u32 = 25;
/// How many times a directory that just appeared is listed again. The watch on a new directory
/// is added only once its creation is reported, so a file written into it right away (`nsc add
/// account` creates the folder, then the JWT) can come before the watch and raise no event.
const NEW_DIR_RECHECKS: u32 = 3;

impl Mirror {
    /// Looks at `paths` as they are now.
    fn observe(&mut self, paths: BTreeSet<PathBuf>, store: &Store) -> Changes {
        let mut changes = Changes::default();
        let mut files = BTreeSet::new();
        let mut gone = BTreeSet::new();
        for path in paths {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    match self.source.files_under(&path) {
                        Ok(found) => files.extend(found),
                        Err(e) => {
                            tracing::warn!(dir = %path.display(), cause = %e, "cannot list a new directory")
                        }
                    }
                    // Listed again on the next few recheck ticks (see `NEW_DIR_RECHECKS`).
                    *self
                        .unsettled
                        .entry(path.clone())
                        .or_insert(RECHECK_TIMES - NEW_DIR_RECHECKS) += 1;
                    // A directory renamed over another: files that were there may be gone.
                    gone.extend(self.known_under(&path).filter(|p| !p.exists()));
                }
                Ok(_) => {
                    if self.source.is_token_file(&path) {
                        files.insert(path);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.unsettled.remove(&path);
                    gone.extend(self.known_under(&path));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), cause = %e, "cannot stat a changed file")
                }
            }
        }
        for file in files {
            self.take(file, store, &mut changes);
        }
        for path in gone {
            self.forget(&path, &mut changes);
        }
        changes
    }

    /// Reads every file again and drops keys no file provides any more.
    fn rescan(&mut self, store: &Store) -> Changes {
        let mut changes = Changes::default();
        let files = match self.source.all_files() {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(root = %self.source.root().display(), cause = %e, "cannot list the store's files; keeping what is loaded");
                return changes;
            }
        };
        let present: HashSet<PathBuf> = files.iter().cloned().collect();
        let mut provided: HashSet<(Kind, String)> = HashSet::new();
        for file in files {
            // A file that cannot be read right now (caught mid-write) still holds its key.
            if let Some(id) = self.source.key_from_path(&file) {
                provided.insert(id);
            }
            self.take(file, store, &mut changes);
        }
        let vanished: Vec<PathBuf> = self
            .known
            .keys()
            .filter(|p| !present.contains(*p))
            .cloned()
            .collect();
        for path in vanished {
            self.forget(&path, &mut changes);
        }
        provided.extend(self.known.values().cloned());
        for kind in [Kind::Account, Kind::Activation] {
            for entry in store.all(kind, usize::MAX) {
                let id = (kind, entry.key.to_string());
                if !provided.contains(&id) && !changes.removals.contains(&id) {
                    changes.removals.push(id);
                }
            }
        }
        changes
    }

    fn known_under<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = PathBuf> + 'a {
        self.known
            .keys()
            .filter(move |p| p.starts_with(dir))
            .cloned()
    }

    /// Reads one token file; queues it when it differs from what is stored and verifies.
    fn take(&mut self, path: PathBuf, store: &Store, changes: &mut Changes) {
        let token = match self.source.read(&path) {
            Ok(token) => token,
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "not a usable token; the stored version stays");
                *self.unsettled.entry(path).or_insert(0) += 1;
                return;
            }
        };
        let id = (token.kind, token.key.clone());
        let unchanged = store
            .get(token.kind, &token.key)
            .is_some_and(|e| e.jwt == token.text.as_bytes());
        if !unchanged {
            match verify::watched_file(&token.text) {
                Ok(jwt) => changes
                    .upserts
                    .push(Arc::new(Entry::new(token.kind, &token.key, &jwt))),
                Err(e) => {
                    tracing::warn!(path = %path.display(), cause = %e, "token not applied (a file caught mid-write is read again when its write completes)");
                    *self.unsettled.entry(path).or_insert(0) += 1;
                    return;
                }
            }
        }
        self.unsettled.remove(&path);
        if let Some(previous) = self.known.insert(path.clone(), id.clone()) {
            if previous != id {
                // The file now holds another account (nsc): the old one may be gone.
                self.release(previous, changes);
            }
        }
    }

    /// A token file disappeared.
    fn forget(&mut self, path: &Path, changes: &mut Changes) {
        if let Some(id) = self.known.remove(path) {
            self.release(id, changes);
        }
    }

    /// Removes `id` from the index unless another file still provides it.
    fn release(&mut self, id: (Kind, String), changes: &mut Changes) {
        if !self.known.values().any(|v| *v == id) {
            changes.removals.push(id);
        }
    }
}
