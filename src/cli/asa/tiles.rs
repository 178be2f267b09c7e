//! `asa-lth asa tiles`: how many attention tiles a tile-skipping kernel could skip under the
//! ASA mask, in text order and with queries and keys regrouped by tag, against the causal
//! mask — the upper bound on any block-sparse kernel's speed-up from the mask (issue 21's
//! "predetermined masks are hardware-friendly").

use super::*;
use crate::backend::IGNORE_INDEX;
use crate::data::batch::EvalWindows;
use crate::data::CorpusSource;
use crate::mask::tiles::{occupied_blocks, tag_grouped_ranks};
use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

/// `asa tiles`.
#[derive(Args, Debug, Clone)]
pub struct TilesArgs {
    #[command(flatten)]
    pub mask: MaskArgs,
    /// Window lengths T (comma-separated).
    #[arg(
        long = "seq-lens",
        value_delimiter = ',',
        default_value = "128,256,512,1024,2048,4096,8192"
    )]
    pub seq_lens: Vec<usize>,
    /// Square tile sizes (comma-separated).
    #[arg(long = "tiles", value_delimiter = ',', default_value = "64,128")]
    pub tiles: Vec<usize>,
    /// Windows measured per T, consecutive from the start of the split (fewer where the
    /// split is shorter).
    #[arg(long, default_value_t = 8)]
    pub windows: usize,
    /// Also write the table as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One (T, tile) row, summed over the windows and mask heads measured.
#[derive(Clone, Debug, Serialize)]
pub struct TileRow {
    pub seq_len: usize,
    pub tile: usize,
    pub windows: usize,
    /// Blocks of the causal mask in text order (what a causal flash kernel visits).
    pub causal_blocks: usize,
    /// Non-empty blocks of the ASA mask in text order.
    pub asa_blocks: usize,
    /// Non-empty blocks with queries and keys regrouped by tag (then position).
    pub asa_grouped_blocks: usize,
    /// Allowed share of the causal pairs.
    pub density: f64,
}

impl TileRow {
    /// The best speed-up over the causal kernel a kernel visiting only non-empty blocks can
    /// reach (per-block work equal), in the better of the two orders.
    pub fn best_speedup(&self) -> f64 {
        self.causal_blocks as f64 / self.asa_blocks.min(self.asa_grouped_blocks).max(1) as f64
    }
}

#[derive(Serialize)]
struct TilesReport {
    corpus: String,
    split: String,
    tagger: String,
    compat: String,
    rows: Vec<TileRow>,
}

/// `asa tiles`.
pub fn tiles(source: &CorpusSource, a: &TilesArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(p) = &a.json {
        crate::io::check_writable(p)?;
    }
    if a.windows == 0 {
        bail!("--windows must be positive");
    }
    if let Some(&t) = a.seq_lens.iter().find(|&&t| !(2..=65_536).contains(&t)) {
        bail!("--seq-lens: T = {t} is outside 2..=65536");
    }
    if let Some(&t) = a.tiles.iter().find(|&&t| t == 0) {
        bail!("--tiles: a tile of {t} positions");
    }
    let p = prepare(source, &a.mask)?;
    let stream = p.vocab.encode(&p.sents);
    let mut rows = vec![];
    let mut skipped = vec![];
    for &t in &a.seq_lens {
        // Whole windows only: padding is no query or key and would thin the blocks.
        let windows: Vec<_> = match EvalWindows::new(&stream, 1, t) {
            Ok(w) => w
                .filter(|b| b.targets.iter().all(|&y| y != IGNORE_INDEX))
                .take(a.windows)
                .collect(),
            Err(_) => vec![],
        };
        if windows.is_empty() {
            skipped.push(t);
            continue;
        }
        let mut acc: Vec<TileRow> = a
            .tiles
            .iter()
            .map(|&tile| TileRow {
                seq_len: t,
                tile,
                windows: windows.len(),
                causal_blocks: 0,
                asa_blocks: 0,
                asa_grouped_blocks: 0,
                density: 0.0,
            })
            .collect();
        let (mut allowed, mut pairs) = (0u64, 0u64);
        let natural: Vec<u32> = (0..t as u32).collect();
        for batch in &windows {
            let mut mask = p.builder.build_for_batch(batch)?;
            if let Some(r) = &p.refiner {
                r.apply(&mut mask, &batch.tokens, &batch.upos)?;
            }
            allowed += mask.causal_count();
            pairs += (mask.heads() * t * (t + 1) / 2) as u64;
            let grouped = tag_grouped_ranks(&batch.upos);
            for row in &mut acc {
                let nt = t.div_ceil(row.tile);
                for h in 0..mask.heads() {
                    row.causal_blocks += nt * (nt + 1) / 2;
                    row.asa_blocks += occupied_blocks(&mask, 0, h, &natural, row.tile)?;
                    row.asa_grouped_blocks += occupied_blocks(&mask, 0, h, &grouped, row.tile)?;
                }
            }
        }
        for mut row in acc {
            row.density = allowed as f64 / pairs as f64;
            rows.push(row);
        }
    }
    if rows.is_empty() {
        bail!(
            "the {} split is shorter than every --seq-lens window ({:?})",
            vname(&a.mask.split),
            a.seq_lens
        );
    }
    writeln!(
        out,
        "corpus: {}, split {} | tags: {} | compat: {}\nblocks a tile-skipping kernel visits \
         (summed over windows and mask heads); the causal kernel visits the lower triangle in \
         text order; 'grouped' sorts queries and keys by (tag, position)\n",
        source.label(),
        vname(&a.mask.split),
        p.tagger,
        p.compat
    )?;
    writeln!(
        out,
        "| T | tile | windows | ASA density | causal blocks | ASA blocks | ASA grouped by tag | \
         best speed-up bound |\n|---|---|---|---|---|---|---|---|"
    )?;
    for r in &rows {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} ({}) | {} ({}) | {:.2}× |",
            r.seq_len,
            r.tile,
            r.windows,
            pct(r.density),
            r.causal_blocks,
            r.asa_blocks,
            pct(r.asa_blocks as f64 / r.causal_blocks as f64),
            r.asa_grouped_blocks,
            pct(r.asa_grouped_blocks as f64 / r.causal_blocks as f64),
            r.best_speedup()
        )?;
    }
    if !skipped.is_empty() {
        writeln!(
            out,
            "\nnot measured (the split holds no whole window of this length): T = {skipped:?}"
        )?;
    }
    if let Some(path) = &a.json {
        let report = TilesReport {
            corpus: source.label(),
            split: vname(&a.mask.split),
            tagger: p.tagger.clone(),
            compat: p.compat.clone(),
            rows,
        };
        crate::io::write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
        writeln!(out, "json: {}", path.display())?;
    }
    Ok(())
}
