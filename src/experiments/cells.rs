//! Result cells: every (experiment, arm, seed) is computed independently, written atomically
//! as one JSON file, and skipped when it is already there — so `reproduce` resumes after an
//! interruption without redoing finished work, and shards (`--shard i/n`) can run on different
//! machines into the same run directory (or into copies merged later).
//!
//! Layout under a run directory:
//! - `config.json` — the [`super::ReproduceConfig`] every cell was computed from;
//! - `cells/<exp>/<arm>/seed-<s>.json` — finished cells ([`CellFile`]);
//! - `work/<exp>/<arm>/seed-<s>/` — scratch of a cell in progress (checkpoints), kept so a
//!   killed cell resumes from its last checkpoint;
//! - `locks/<exp>/<arm>/seed-<s>.lock` — held by the process computing the cell ([`CellLock`]):
//!   created atomically (`create_new`), naming its owner (host and pid), and touched every
//!   [`HEARTBEAT_SECS`] seconds while the cell runs. So any number of processes, sharded or
//!   not, can share one run directory and each cell is computed once. A lock is stale — taken
//!   over — when its owner is a process of this host that no longer exists, or when its
//!   heartbeat is older than [`STALE_SECS`] (an owner on another machine that died).

use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Identity of one cell.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellKey {
    /// Experiment family, e.g. `train`, `e3`, `e5`.
    pub exp: String,
    /// Arm within it, e.g. `dense`, `asa`, `attn`.
    pub arm: String,
    pub seed: u64,
}

impl CellKey {
    pub fn new(exp: &str, arm: &str, seed: u64) -> Self {
        CellKey {
            exp: exp.into(),
            arm: arm.into(),
            seed,
        }
    }

    /// `exp/arm/seed-s`, the cell's relative path without extension.
    pub fn id(&self) -> String {
        format!("{}/{}/seed-{}", self.exp, self.arm, self.seed)
    }
}

impl std::fmt::Display for CellKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id())
    }
}

/// A finished cell on disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellFile<T> {
    pub key: CellKey,
    /// Hash of the run configuration the cell was computed under.
    pub config_hash: String,
    pub git_commit: String,
    pub device: String,
    pub seconds: f64,
    pub result: T,
}

/// Seconds between a held lock's heartbeats.
pub const HEARTBEAT_SECS: u64 = 20;
/// A lock whose heartbeat is older than this many seconds is stale.
pub const STALE_SECS: u64 = 180;

/// What a lock file holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LockInfo {
    host: String,
    pid: u32,
    started_unix: u64,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// A held cell lock; dropping it stops the heartbeat and removes the file.
pub struct CellLock {
    path: PathBuf,
    stop: std::sync::mpsc::Sender<()>,
    beat: Option<std::thread::JoinHandle<()>>,
}

impl Drop for CellLock {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(h) = self.beat.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Who holds a cell that this process could not lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder(pub String);

/// The cells of one run directory.
pub struct CellStore {
    root: PathBuf,
    config_hash: String,
}

impl CellStore {
    /// The store under `root` for a configuration with hash `config_hash`.
    pub fn new(root: &Path, config_hash: &str) -> Self {
        CellStore {
            root: root.to_path_buf(),
            config_hash: config_hash.into(),
        }
    }

    /// The run directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a finished cell's file.
    pub fn path(&self, key: &CellKey) -> PathBuf {
        self.root.join("cells").join(format!("{}.json", key.id()))
    }

    /// Path of a cell's lock file.
    pub fn lock_path(&self, key: &CellKey) -> PathBuf {
        self.root.join("locks").join(format!("{}.lock", key.id()))
    }

    /// Lock `key` for this process: `Ok(Ok(lock))` when taken (a stale lock is taken over),
    /// `Ok(Err(holder))` when a live process holds it.
    pub fn try_lock(&self, key: &CellKey) -> Result<std::result::Result<CellLock, Holder>> {
        let path = self.lock_path(key);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let me = LockInfo {
            host: host_name(),
            pid: std::process::id(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    let json = serde_json::to_string(&me).unwrap_or_default();
                    f.write_all(json.as_bytes()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    return Ok(Ok(self.heartbeat(path)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match stale(&path, &me.host) {
                        Some(why) => {
                            // Take it over: only one contender's rename of this file succeeds.
                            let grave = path.with_extension(format!("stale-{}", me.pid));
                            if std::fs::rename(&path, &grave).is_ok() {
                                let _ = std::fs::remove_file(&grave);
                                eprintln!("cell {key}: taking over a stale lock ({why})");
                            }
                        }
                        None => {
                            let who = std::fs::read_to_string(&path)
                                .ok()
                                .and_then(|t| serde_json::from_str::<LockInfo>(&t).ok())
                                .map_or("another process".to_string(), |i| {
                                    format!("pid {} on {}", i.pid, i.host)
                                });
                            return Ok(Err(Holder(who)));
                        }
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        Ok(Err(Holder("another process (lock contended)".into())))
    }

    fn heartbeat(&self, path: PathBuf) -> CellLock {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let p = path.clone();
        let beat = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(std::time::Duration::from_secs(HEARTBEAT_SECS))
            {
                // Touch: rewrite the same bytes, which updates the modification time.
                if let Ok(bytes) = std::fs::read(&p) {
                    let _ = std::fs::write(&p, bytes);
                }
            }
        });
        CellLock {
            path,
            stop,
            beat: Some(beat),
        }
    }

    /// Scratch directory of a cell in progress.
    pub fn work_dir(&self, key: &CellKey) -> PathBuf {
        self.root.join("work").join(key.id())
    }

    /// The finished cell, if present. A cell computed under another configuration is an
    /// error (mixing them would make the report lie), as is a file that does not parse.
    pub fn load<T: DeserializeOwned>(&self, key: &CellKey) -> Result<Option<CellFile<T>>> {
        let p = self.path(key);
        if !p.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(|source| Error::Io {
            path: p.clone(),
            source,
        })?;
        let cell: CellFile<T> = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: not a result cell: {e}", p.display())))?;
        if cell.config_hash != self.config_hash {
            return Err(Error::Config(format!(
                "{}: computed under configuration {} but this run's is {}; use another --out",
                p.display(),
                cell.config_hash,
                self.config_hash
            )));
        }
        Ok(Some(cell))
    }

    /// Write a finished cell atomically.
    pub fn save<T: Serialize>(&self, cell: &CellFile<T>) -> Result<()> {
        let json = serde_json::to_string(cell)
            .map_err(|e| Error::Config(format!("cell {}: {e}", cell.key)))?;
        crate::io::write_atomic(&self.path(&cell.key), json.as_bytes())
    }

    /// Every finished cell's key under the store, sorted.
    pub fn finished(&self) -> Result<Vec<CellKey>> {
        let mut keys = Vec::new();
        let cells = self.root.join("cells");
        if !cells.is_dir() {
            return Ok(keys);
        }
        for exp in read_dir(&cells)? {
            for arm in read_dir(&exp)? {
                for f in read_dir(&arm)? {
                    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    let Some(seed) = name
                        .strip_prefix("seed-")
                        .and_then(|s| s.strip_suffix(".json"))
                        .and_then(|s| s.parse().ok())
                    else {
                        continue;
                    };
                    keys.push(CellKey {
                        exp: file_name(&exp),
                        arm: file_name(&arm),
                        seed,
                    });
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The configuration hash this store checks against.
    pub fn config_hash(&self) -> &str {
        &self.config_hash
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_dir(p: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io {
        path: p.to_path_buf(),
        source,
    };
    let mut v = Vec::new();
    for e in std::fs::read_dir(p).map_err(io)? {
        let path = e.map_err(io)?.path();
        if path.is_dir() || path.extension().is_some_and(|x| x == "json") {
            v.push(path);
        }
    }
    v.sort();
    Ok(v)
}

/// A shard `i/n` (0-based `i < n`) of an ordered cell list: cells whose position `p` has
/// `p % n == i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole list.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether position `p` of the list belongs to this shard.
    pub fn owns(&self, p: usize) -> bool {
        p % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;
    /// `i/n` with `0 ≤ i < n` (a Slurm array task passes `$SLURM_ARRAY_TASK_ID/$N`).
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || {
            Error::Config(format!(
                "--shard {s:?}: expected i/n with 0 ≤ i < n, e.g. 0/4"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// A stable 64-bit FNV-1a hash of `bytes`, as 16 hex digits (identifies a configuration; not
/// for security).
pub fn fnv_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Why the lock at `path` is stale (None: it is live). `host` is this machine's name.
fn stale(path: &Path, host: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    if let Ok(info) = serde_json::from_str::<LockInfo>(&text) {
        if info.host == host && !Path::new(&format!("/proc/{}", info.pid)).exists() {
            return Some(format!(
                "its owner, pid {} on this host, has exited",
                info.pid
            ));
        }
    }
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())?
        .as_secs();
    // A lock being written right now has no content yet: give it the stale period too.
    (age > STALE_SECS).then(|| format!("no heartbeat for {age} s"))
}
