//! Result cells: every (experiment, arm, seed) is computed independently, written atomically
//! as one JSON file, and skipped when it is already there — so `reproduce` resumes after an
//! interruption without redoing finished work, and shards (`--shard i/n`) can run on different
//! machines into the same run directory (or into copies merged later).
//!
//! Layout under a run directory:
//! - `config.json` — the [`super::ReproduceConfig`] every cell was computed from;
//! - `cells/<exp>/<arm>/seed-<s>.json` — finished cells ([`CellFile`]);
//! - `work/<exp>/<arm>/seed-<s>/` — scratch of a cell in progress (checkpoints), kept so a
//!   killed cell resumes from its last checkpoint.

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
