//! Hierarchical word clusters from unlabelled text, for the perceptron's feature set 3.
//!
//! Each lower-cased word type seen often enough gets a bit string (a path in a binary tree,
//! like Brown clusters): the type's left and right neighbours (one and two positions away,
//! over the most frequent context words, other words by form class) give a distribution per
//! position, square-rooted and concatenated (Hellinger geometry); the vocabulary is split in
//! two recursively, along the weighted principal direction refined by 2-means (bisecting
//! k-means). A cluster is a property of the word *type*: the features it feeds depend on
//! the word only, never on the sentence being tagged. Deterministic: sorted vocabulary, no
//! randomness.

use super::features::{norm, word_class, WordClass};
use std::collections::{BTreeMap, HashMap};

/// How to learn clusters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClusterOptions {
    /// Depth of the tree (bit-string length, at most 30).
    pub depth: u8,
    /// Types seen fewer times are not clustered.
    pub min_count: u32,
    /// Number of frequent context words (others count by form class).
    pub contexts: usize,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            depth: 12,
            min_count: 1,
            contexts: 1000,
        }
    }
}

/// Word type → bit-string path.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Clusters {
    paths: HashMap<String, (u32, u8)>,
}

type Sparse = Vec<(u32, f32)>;

fn dot(x: &Sparse, c: &[f64]) -> f64 {
    x.iter().map(|&(j, v)| f64::from(v) * c[j as usize]).sum()
}

impl Clusters {
    /// Learn from sentences of word forms.
    pub fn learn<'a>(sentences: impl Iterator<Item = &'a [String]>, opts: &ClusterOptions) -> Self {
        let sents: Vec<Vec<String>> = sentences
            .map(|s| s.iter().map(|w| norm(w)).collect())
            .collect();
        let mut count: HashMap<&str, u32> = HashMap::new();
        for s in &sents {
            for w in s {
                *count.entry(w.as_str()).or_insert(0) += 1;
            }
        }
        let mut by_freq: Vec<(&str, u32)> = count.iter().map(|(&w, &c)| (w, c)).collect();
        by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let nctx = opts.contexts.min(by_freq.len());
        let ctx_ix: HashMap<&str, u32> = by_freq[..nctx]
            .iter()
            .enumerate()
            .map(|(i, &(w, _))| (w, i as u32))
            .collect();
        // Block layout: frequent words, then one slot per word class, then <s> and </s>.
        let block = nctx + WordClass::ALL.len() + 2;
        let ctx_id = |w: Option<&String>, end: usize| -> u32 {
            match w {
                None => (nctx + WordClass::ALL.len() + end) as u32,
                Some(w) => ctx_ix
                    .get(w.as_str())
                    .copied()
                    .unwrap_or((nctx + word_class(w).index()) as u32),
            }
        };
        let vocab: Vec<(&str, u32)> = by_freq
            .iter()
            .copied()
            .filter(|&(_, c)| c >= opts.min_count)
            .collect();
        let vix: HashMap<&str, usize> = vocab
            .iter()
            .enumerate()
            .map(|(i, &(w, _))| (w, i))
            .collect();
        let offsets: [isize; 4] = [-2, -1, 1, 2];
        let mut ctx: Vec<[BTreeMap<u32, u32>; 4]> = vec![Default::default(); vocab.len()];
        for s in &sents {
            for (i, w) in s.iter().enumerate() {
                let Some(&v) = vix.get(w.as_str()) else {
                    continue;
                };
                for (b, &o) in offsets.iter().enumerate() {
                    let j = i as isize + o;
                    let c = if j < 0 {
                        ctx_id(None, 0)
                    } else if j as usize >= s.len() {
                        ctx_id(None, 1)
                    } else {
                        ctx_id(s.get(j as usize), 0)
                    };
                    *ctx[v][b].entry(c).or_insert(0) += 1;
                }
            }
        }
        // Hellinger vectors: per block sqrt(p), weighted (nearer blocks count more).
        let bw = [0.5f64, 1.0, 1.0, 0.5];
        let bnorm: f64 = bw.iter().map(|x| x * x).sum::<f64>().sqrt();
        let xs: Vec<Sparse> = ctx
            .iter()
            .map(|blocks| {
                let mut x = Sparse::new();
                for (b, m) in blocks.iter().enumerate() {
                    let tot: u32 = m.values().sum();
                    for (&c, &n) in m {
                        let p = (f64::from(n) / f64::from(tot.max(1))).sqrt() * bw[b] / bnorm;
                        x.push(((b * block) as u32 + c, p as f32));
                    }
                }
                x
            })
            .collect();
        let weights: Vec<f64> = vocab.iter().map(|&(_, c)| f64::from(c).ln_1p()).collect();
        let dim = 4 * block;
        let mut paths = vec![(0u32, 0u8); vocab.len()];
        let ids: Vec<usize> = (0..vocab.len()).collect();
        split(
            &xs,
            &weights,
            dim,
            ids,
            0,
            0,
            opts.depth.min(30),
            &mut paths,
        );
        Clusters {
            paths: vocab
                .iter()
                .zip(paths)
                .map(|(&(w, _), p)| (w.to_string(), p))
                .collect(),
        }
    }

    /// The path of a (lower-cased) word: bits and length.
    pub fn path(&self, lw: &str) -> Option<(u32, u8)> {
        self.paths.get(lw).copied()
    }

    /// Number of clustered types.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether no type is clustered.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// All entries, sorted by word.
    pub fn entries(&self) -> Vec<(&str, u32, u8)> {
        let mut v: Vec<(&str, u32, u8)> = self
            .paths
            .iter()
            .map(|(w, &(b, n))| (w.as_str(), b, n))
            .collect();
        v.sort();
        v
    }

    /// From entries (model readers).
    pub fn from_entries(e: impl IntoIterator<Item = (String, u32, u8)>) -> Self {
        Clusters {
            paths: e.into_iter().map(|(w, b, n)| (w, (b, n))).collect(),
        }
    }
}

/// The first `k` bits of a path as a string ("" for an unclustered word is not produced here).
pub fn prefix_str((bits, len): (u32, u8), k: u8) -> String {
    let k = k.min(len);
    (0..k)
        .map(|i| {
            if bits >> (len - 1 - i) & 1 == 1 {
                '1'
            } else {
                '0'
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn split(
    xs: &[Sparse],
    w: &[f64],
    dim: usize,
    ids: Vec<usize>,
    bits: u32,
    depth: u8,
    max_depth: u8,
    out: &mut [(u32, u8)],
) {
    if depth >= max_depth || ids.len() < 2 {
        for &i in &ids {
            out[i] = (bits, depth);
        }
        return;
    }
    let wsum: f64 = ids.iter().map(|&i| w[i]).sum();
    let mut mu = vec![0f64; dim];
    for &i in &ids {
        for &(j, v) in &xs[i] {
            mu[j as usize] += w[i] * f64::from(v);
        }
    }
    mu.iter_mut().for_each(|m| *m /= wsum);
    // Principal direction by power iteration (deterministic start).
    let mut v: Vec<f64> = (0..dim)
        .map(|j| (j as f64 * 0.618_033_988_7).fract() - 0.5)
        .collect();
    let mut s = vec![0f64; ids.len()];
    for _ in 0..15 {
        let mv = mu.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>();
        let mut nv = vec![0f64; dim];
        let mut ssum = 0.0;
        for (k, &i) in ids.iter().enumerate() {
            s[k] = dot(&xs[i], &v) - mv;
            let ws = w[i] * s[k];
            ssum += ws;
            for &(j, x) in &xs[i] {
                nv[j as usize] += ws * f64::from(x);
            }
        }
        for (n, m) in nv.iter_mut().zip(&mu) {
            *n -= m * ssum;
        }
        let norm = nv.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm <= 1e-12 {
            break;
        }
        v = nv.into_iter().map(|x| x / norm).collect();
    }
    let mv = mu.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>();
    let mut side: Vec<bool> = ids.iter().map(|&i| dot(&xs[i], &v) - mv > 0.0).collect();
    // Refine with 2-means.
    for _ in 0..6 {
        let mut c = [vec![0f64; dim], vec![0f64; dim]];
        let mut cw = [0f64; 2];
        for (k, &i) in ids.iter().enumerate() {
            let b = usize::from(side[k]);
            cw[b] += w[i];
            for &(j, x) in &xs[i] {
                c[b][j as usize] += w[i] * f64::from(x);
            }
        }
        if cw[0] == 0.0 || cw[1] == 0.0 {
            break;
        }
        for b in 0..2 {
            c[b].iter_mut().for_each(|x| *x /= cw[b]);
        }
        let cn = [
            c[0].iter().map(|x| x * x).sum::<f64>(),
            c[1].iter().map(|x| x * x).sum::<f64>(),
        ];
        let mut changed = false;
        for (k, &i) in ids.iter().enumerate() {
            let d0 = cn[0] - 2.0 * dot(&xs[i], &c[0]);
            let d1 = cn[1] - 2.0 * dot(&xs[i], &c[1]);
            let b = d1 < d0;
            changed |= b != side[k];
            side[k] = b;
        }
        if !changed {
            break;
        }
    }
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for (k, &i) in ids.iter().enumerate() {
        if side[k] {
            r.push(i)
        } else {
            l.push(i)
        }
    }
    if l.is_empty() || r.is_empty() {
        // Not separable: stop here.
        for &i in l.iter().chain(&r) {
            out[i] = (bits, depth);
        }
        return;
    }
    split(xs, w, dim, l, bits << 1, depth + 1, max_depth, out);
    split(xs, w, dim, r, bits << 1 | 1, depth + 1, max_depth, out);
}
