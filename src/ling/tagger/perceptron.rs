//! A causal averaged-perceptron tagger (greedy, left to right).
//!
//! Features of position `i` (all from `words[..=i]` and the tags already predicted), feature
//! set 1: the word (lower-cased and exact), its suffixes 1–4 and prefixes 1–3, its collapsed
//! shape and form class (with "sentence-initial"), the two previous predicted tags (alone and
//! together), previous tag × word and × suffix, the two previous words, previous word ×
//! word, previous tag × previous word, and for rare or unseen words the
//! [`UnknownModel`](super::lexicon::UnknownModel)'s guess. Feature set 2 (the built-in model's before set 3)
//! adds suffixes to 5 and prefixes to 4, a length bucket, hyphen
//! parts, the previous word's shape and suffix, tag pair × word, tag × previous word × word
//! and word trigrams, drops the unknown-word guess, and hashes to 32 bits so that binary
//! models stay small. Feature set 3 (the default, and the built-in model's) adds
//! hierarchical word clusters ([`Clusters`], learnt from the word forms of the training and
//! any unlabelled sentences and stored in the model): the word's path prefixes, previous tag
//! × prefix, and the previous word's prefix alone and with the word's. Frequent unambiguous forms are tagged from a tag dictionary. Training
//! uses the tagger's own previous predictions (as at test time), shuffles sentences each
//! epoch with a seeded [`Rng`], and averages the weights (Collins 2002; the layout follows
//! Honnibal's well-known tagger, without its right-context features, which would leak the
//! future).

use super::clusters::{prefix_str, ClusterOptions, Clusters};
use super::features::{feature_hash, norm, prefix, short_shape, suffix, word_class};
use super::lexicon::{check_header, LexiconTagger};
use super::{model_err, model_tag, tagged, Tagger, MODEL_FORMAT};
use crate::ling::compat::NTAGS;
use crate::ling::Sentence;
use crate::ling::Upos;
use crate::rng::Rng;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

/// The `kind` of a saved perceptron.
pub const KIND: &str = "perceptron";

/// The feature templates a model was trained with (stored in model files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FeatureSet {
    /// The first templates (JSON models without a `features` field).
    V1,
    /// Longer affixes, word length and hyphen parts, previous words' shapes and suffixes,
    /// tag-pair × word, word bigrams and trigrams (all from the left context).
    V2,
    /// Feature set 2 plus word clusters (of the word and the previous words, learnt from
    /// unlabelled text and stored in the model), character n-grams of rare words.
    #[default]
    V3,
}

impl FeatureSet {
    /// The number stored in model files.
    pub fn version(self) -> u32 {
        match self {
            FeatureSet::V1 => 1,
            FeatureSet::V2 => 2,
            FeatureSet::V3 => 3,
        }
    }
    /// The feature set stored as `v`.
    pub fn from_version(v: u32) -> Option<Self> {
        match v {
            1 => Some(FeatureSet::V1),
            2 => Some(FeatureSet::V2),
            3 => Some(FeatureSet::V3),
            _ => None,
        }
    }
}

/// Words seen at most this often get the unknown-word model's guess as a feature.
const GUESS_MAX_FREQ: u32 = 2;

/// Pass-through hasher for keys that are already hashes.
#[derive(Default)]
struct IdHasher(u64);
impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        // Spread 32-bit keys over the high bits too (the table's control bytes use them).
        self.0 = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
type FeatMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Training options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainOptions {
    /// Passes over the training sentences.
    pub iterations: usize,
    /// Seed of the per-epoch shuffles.
    pub seed: u64,
    /// A form enters the tag dictionary when seen at least this often …
    pub tagdict_min_count: u32,
    /// … with its most frequent tag at least this share of its occurrences.
    pub tagdict_min_ratio: f64,
    /// Feature templates.
    pub features: FeatureSet,
    /// Models trained with seeds `seed`, `seed + 1`, … whose weights are averaged.
    pub ensemble: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            iterations: 8,
            seed: 1,
            tagdict_min_count: 20,
            tagdict_min_ratio: 0.97,
            features: FeatureSet::default(),
            ensemble: 1,
        }
    }
}

/// The averaged perceptron tagger.
#[derive(Clone, Debug)]
pub struct PerceptronTagger {
    weights: FeatMap<[f32; NTAGS]>,
    tagdict: HashMap<String, Upos>,
    lexicon: LexiconTagger,
    features: FeatureSet,
    clusters: Clusters,
}

const BOS: &str = "<s>";

fn tag_str(prev: &[Upos], back: usize) -> &'static str {
    if prev.len() >= back {
        prev[prev.len() - back].name()
    } else {
        BOS
    }
}

/// Collect the feature hashes of the last word of `words` into `out`.
fn features(lex: &LexiconTagger, words: &[&str], prev: &[Upos], out: &mut Vec<u64>) {
    out.clear();
    let i = words.len() - 1;
    let w = words[i];
    let lw = norm(w);
    let lw1 = if i >= 1 {
        norm(words[i - 1])
    } else {
        BOS.into()
    };
    let lw2 = if i >= 2 {
        norm(words[i - 2])
    } else {
        BOS.into()
    };
    let (t1, t2) = (tag_str(prev, 1), tag_str(prev, 2));
    let s3 = suffix(&lw, 3);
    let class = format!("{:?}{}", word_class(w), if i == 0 { "^" } else { "" });
    let mut f = |t: u8, parts: &[&str]| out.push(feature_hash(t, parts));
    f(0, &[]);
    f(1, &[&lw]);
    if w != lw {
        f(2, &[w]);
    }
    for n in 1..=4 {
        if lw.chars().count() > n {
            f(10 + n as u8, &[suffix(&lw, n)]);
        }
    }
    for n in 1..=3 {
        if lw.chars().count() > n {
            f(20 + n as u8, &[prefix(&lw, n)]);
        }
    }
    f(3, &[&short_shape(w)]);
    f(4, &[&class]);
    if w.contains('-') {
        f(5, &[]);
    }
    f(6, &[t1]);
    f(7, &[t2]);
    f(8, &[t1, t2]);
    f(9, &[t1, &lw]);
    f(30, &[t1, s3]);
    f(31, &[t1, t2, s3]);
    f(32, &[&lw1]);
    f(33, &[suffix(&lw1, 3)]);
    f(34, &[&lw2]);
    f(35, &[&lw1, &lw]);
    f(36, &[t1, &lw1]);
    if lex.frequency(w) <= GUESS_MAX_FREQ {
        let g = lex.unknown_model().guess(w, i == 0);
        f(40, &[g.name()]);
        f(41, &[g.name(), t1]);
        f(42, &[&class, g.name()]);
    }
}

/// Length bucket of a word (in chars).
fn len_bucket(n: usize) -> &'static str {
    match n {
        0..=1 => "1",
        2 => "2",
        3 => "3",
        4 => "4",
        5..=6 => "5",
        7..=9 => "7",
        _ => "10",
    }
}

/// Feature set 2: collect the feature hashes of the last word of `words` into `out`.
fn features_v2(words: &[&str], prev: &[Upos], out: &mut Vec<u64>) {
    out.clear();
    let i = words.len() - 1;
    let w = words[i];
    let lw = norm(w);
    let back = |k: usize| -> String {
        if i >= k {
            norm(words[i - k])
        } else {
            BOS.into()
        }
    };
    let (lw1, lw2) = (back(1), back(2));
    let (t1, t2) = (tag_str(prev, 1), tag_str(prev, 2));
    let n = lw.chars().count();
    let s3 = suffix(&lw, 3);
    let s2 = suffix(&lw, 2);
    let shape = short_shape(w);
    let class = format!("{:?}{}", word_class(w), if i == 0 { "^" } else { "" });
    // 32-bit hashes: the binary model stores them delta-coded in about two bytes each.
    let mut f = |t: u8, parts: &[&str]| {
        let h = feature_hash(t, parts);
        out.push(h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32)
    };
    f(0, &[]);
    f(1, &[&lw]);
    if w != lw {
        f(2, &[w]);
    }
    for k in 1..=5 {
        if n > k {
            f(10 + k as u8, &[suffix(&lw, k)]);
        }
    }
    for k in 1..=4 {
        if n > k {
            f(20 + k as u8, &[prefix(&lw, k)]);
        }
    }
    f(3, &[&shape]);
    f(4, &[&class]);
    f(5, &[len_bucket(n)]);
    if n > 1 && lw.contains('-') {
        let mut parts = lw.split('-').filter(|p| !p.is_empty());
        let first = parts.next().unwrap_or("");
        let last = parts.next_back().unwrap_or(first);
        f(6, &[last]);
        f(7, &[first]);
        f(8, &[suffix(last, 3)]);
    }
    f(30, &[t1]);
    f(31, &[t2]);
    f(32, &[t1, t2]);
    f(33, &[t1, &lw]);
    f(34, &[t1, s3]);
    f(35, &[t1, t2, s3]);
    f(36, &[t1, s2]);
    f(37, &[t1, &class]);
    f(38, &[t1, t2, &lw]);
    f(40, &[&lw1]);
    f(41, &[&lw2]);
    f(42, &[&lw1, &lw]);
    f(43, &[t1, &lw1]);
    f(44, &[suffix(&lw1, 3)]);
    f(45, &[&lw2, &lw1, &lw]);
    f(46, &[t1, &lw1, &lw]);
    f(47, &[&lw2, &lw]);
    let sh1 = if i >= 1 {
        short_shape(words[i - 1])
    } else {
        BOS.into()
    };
    f(48, &[&sh1]);
    f(49, &[&sh1, &shape]);
    f(50, &[&lw1, s3]);
    f(51, &[t2, &lw2]);
    // (Unlike feature set 1 there is no unknown-word-model guess: on EWT dev it cost
    // accuracy on unknown words, 80.8% without vs 77.5% with.)
}

/// Cluster-path prefix lengths used as features of the current word (feature set 3).
const CLUSTER_PREFIXES: [u8; 5] = [4, 6, 8, 10, 12];
/// Prefix length of the cluster features combined with the previous tag and word.
const CLUSTER_PAIR: u8 = 6;

/// Feature set 3: feature set 2 plus the word's cluster-path prefixes, the previous tag ×
/// the word's cluster, the previous word's cluster and the two clusters together.
fn features_v3(cl: &Clusters, words: &[&str], prev: &[Upos], out: &mut Vec<u64>) {
    features_v2(words, prev, out);
    let i = words.len() - 1;
    let lw = norm(words[i]);
    let t1 = tag_str(prev, 1);
    let mut f = |t: u8, parts: &[&str]| {
        let h = feature_hash(t, parts);
        out.push(h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32)
    };
    let path = cl.path(&lw);
    match path {
        Some(p) => {
            for (j, &k) in CLUSTER_PREFIXES.iter().enumerate() {
                f(60 + j as u8, &[&prefix_str(p, k)]);
            }
            f(70, &[t1, &prefix_str(p, CLUSTER_PAIR)]);
        }
        None => f(59, &[]),
    }
    let p1 = if i >= 1 {
        cl.path(&norm(words[i - 1]))
            .map_or_else(|| "?".into(), |p| prefix_str(p, CLUSTER_PAIR))
    } else {
        BOS.into()
    };
    f(71, &[&p1]);
    if let Some(p) = path {
        f(72, &[&p1, &prefix_str(p, CLUSTER_PAIR)]);
    }
}

/// The feature hashes of the last word of `words` under feature set `fs`.
fn extract(
    fs: FeatureSet,
    lex: &LexiconTagger,
    cl: &Clusters,
    words: &[&str],
    prev: &[Upos],
    out: &mut Vec<u64>,
) {
    match fs {
        FeatureSet::V1 => features(lex, words, prev, out),
        FeatureSet::V2 => features_v2(words, prev, out),
        FeatureSet::V3 => features_v3(cl, words, prev, out),
    }
}

fn argmax(s: &[f32; NTAGS]) -> usize {
    let mut best = 0;
    for k in 1..NTAGS {
        if s[k] > s[best] {
            best = k;
        }
    }
    best
}

/// Weights during training, with lazy averaging.
#[derive(Default)]
struct Trainer {
    index: FeatMap<usize>,
    w: Vec<[f32; NTAGS]>,
    total: Vec<[f64; NTAGS]>,
    stamp: Vec<[u32; NTAGS]>,
    step: u32,
}

impl Trainer {
    fn score(&self, feats: &[u64]) -> [f32; NTAGS] {
        let mut s = [0f32; NTAGS];
        for f in feats {
            if let Some(&ix) = self.index.get(f) {
                for (sk, wk) in s.iter_mut().zip(&self.w[ix]) {
                    *sk += wk;
                }
            }
        }
        s
    }

    fn update(&mut self, truth: usize, guess: usize, feats: &[u64]) {
        self.step += 1;
        if truth == guess {
            return;
        }
        for &f in feats {
            let n = self.w.len();
            let ix = *self.index.entry(f).or_insert(n);
            if ix == n {
                self.w.push([0.0; NTAGS]);
                self.total.push([0.0; NTAGS]);
                self.stamp.push([0; NTAGS]);
            }
            for (k, d) in [(truth, 1.0f32), (guess, -1.0)] {
                let elapsed = f64::from(self.step - self.stamp[ix][k]);
                self.total[ix][k] += elapsed * f64::from(self.w[ix][k]);
                self.stamp[ix][k] = self.step;
                self.w[ix][k] += d;
            }
        }
    }

    fn averaged(self) -> FeatMap<[f32; NTAGS]> {
        let steps = f64::from(self.step.max(1));
        let mut out = FeatMap::default();
        for (f, ix) in self.index {
            let mut avg = [0f32; NTAGS];
            let mut any = false;
            for (k, a) in avg.iter_mut().enumerate() {
                let tot = self.total[ix][k]
                    + f64::from(self.step - self.stamp[ix][k]) * f64::from(self.w[ix][k]);
                *a = (tot / steps) as f32;
                any |= *a != 0.0;
            }
            if any {
                out.insert(f, avg);
            }
        }
        out
    }
}

impl PerceptronTagger {
    /// Train on the tagged sentences of `train`.
    pub fn train(train: &[Sentence], opts: &TrainOptions) -> Result<Self> {
        Self::train_with(train, &[], opts)
    }

    /// Train on the tagged sentences of `train`; feature set 3's word clusters are learnt
    /// from the word forms of `train` and `unlabelled` (their tags are not used).
    pub fn train_with(
        train: &[Sentence],
        unlabelled: &[Sentence],
        opts: &TrainOptions,
    ) -> Result<Self> {
        let clusters = if opts.features == FeatureSet::V3 {
            Clusters::learn(
                train.iter().chain(unlabelled).map(|s| s.words.as_slice()),
                &ClusterOptions::default(),
            )
        } else {
            Clusters::default()
        };
        let mut sum: Option<FeatMap<[f32; NTAGS]>> = None;
        let mut last = None;
        for k in 0..opts.ensemble.max(1) as u64 {
            let m = Self::train_one(
                train,
                &TrainOptions {
                    seed: opts.seed + k,
                    ..*opts
                },
                &clusters,
            )?;
            match &mut sum {
                None => sum = Some(m.weights.clone()),
                Some(acc) => {
                    for (f, w) in &m.weights {
                        let a = acc.entry(*f).or_insert([0.0; NTAGS]);
                        for (x, y) in a.iter_mut().zip(w) {
                            *x += y;
                        }
                    }
                }
            }
            last = Some(m);
        }
        let mut m = last.expect("at least one seed");
        let mut w = sum.expect("at least one seed");
        let n = opts.ensemble.max(1) as f32;
        if n > 1.0 {
            w.values_mut()
                .for_each(|r| r.iter_mut().for_each(|x| *x /= n));
        }
        m.weights = w;
        Ok(m)
    }

    fn train_one(train: &[Sentence], opts: &TrainOptions, clusters: &Clusters) -> Result<Self> {
        let lexicon = LexiconTagger::train(train)?;
        let data = tagged(train)?;
        // Tag dictionary over exact forms.
        let mut counts: HashMap<&str, [u32; NTAGS]> = HashMap::new();
        for (words, tags) in &data {
            for (w, &t) in words.iter().zip(tags.iter()) {
                counts.entry(w.as_str()).or_insert([0; NTAGS])[t as usize] += 1;
            }
        }
        let tagdict: HashMap<String, Upos> = counts
            .into_iter()
            .filter_map(|(w, c)| {
                let n: u32 = c.iter().sum();
                let (k, &m) = c.iter().enumerate().max_by_key(|&(k, &m)| (m, NTAGS - k))?;
                (n >= opts.tagdict_min_count
                    && f64::from(m) >= opts.tagdict_min_ratio * f64::from(n))
                .then(|| (w.to_string(), Upos::ALL[k]))
            })
            .collect();
        let mut tr = Trainer::default();
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut rng = Rng::new(opts.seed);
        let mut feats = Vec::with_capacity(48);
        for _ in 0..opts.iterations.max(1) {
            rng.shuffle(&mut order);
            for &s in &order {
                let (words, gold) = data[s];
                let ws: Vec<&str> = words.iter().map(String::as_str).collect();
                let mut prev: Vec<Upos> = Vec::with_capacity(ws.len());
                for i in 0..ws.len() {
                    let guess = if let Some(&t) = tagdict.get(ws[i]) {
                        t
                    } else {
                        extract(
                            opts.features,
                            &lexicon,
                            clusters,
                            &ws[..=i],
                            &prev,
                            &mut feats,
                        );
                        let g = argmax(&tr.score(&feats));
                        tr.update(gold[i] as usize, g, &feats);
                        Upos::ALL[g]
                    };
                    prev.push(guess);
                }
            }
        }
        Ok(PerceptronTagger {
            weights: tr.averaged(),
            tagdict,
            lexicon,
            features: opts.features,
            clusters: clusters.clone(),
        })
    }

    /// A model from its parts (the binary reader).
    pub(crate) fn from_parts(
        weights: Vec<(u64, [f32; NTAGS])>,
        tagdict: HashMap<String, Upos>,
        lexicon: LexiconTagger,
        features: FeatureSet,
        clusters: Clusters,
    ) -> Self {
        PerceptronTagger {
            weights: weights.into_iter().collect(),
            tagdict,
            lexicon,
            features,
            clusters,
        }
    }

    /// The word clusters (feature set 3; empty otherwise).
    pub fn clusters(&self) -> &Clusters {
        &self.clusters
    }

    /// The lexicon (word frequencies, unknown-word model) the model carries.
    pub fn lexicon(&self) -> &LexiconTagger {
        &self.lexicon
    }

    /// The feature templates the model uses.
    pub fn feature_set(&self) -> FeatureSet {
        self.features
    }

    /// The tag dictionary (forms tagged without the weights).
    pub(crate) fn tagdict(&self) -> &HashMap<String, Upos> {
        &self.tagdict
    }

    /// The weights by feature hash.
    pub(crate) fn weights(&self) -> impl Iterator<Item = (&u64, &[f32; NTAGS])> {
        self.weights.iter()
    }

    /// Number of weighted features.
    pub fn num_features(&self) -> usize {
        self.weights.len()
    }

    /// Serialise as a versioned JSON model (the embedded lexicon supplies word frequencies
    /// and the unknown-word model).
    pub fn to_json(&self) -> String {
        let mut weights: Vec<(u64, Vec<(u8, f32)>)> = self
            .weights
            .iter()
            .map(|(&f, w)| {
                (
                    f,
                    w.iter()
                        .enumerate()
                        .filter(|(_, &x)| x != 0.0)
                        .map(|(k, &x)| (k as u8, x))
                        .collect(),
                )
            })
            .collect();
        weights.sort_by_key(|(f, _)| *f);
        let lexicon: serde_json::Value =
            serde_json::from_str(&self.lexicon.to_json()).expect("lexicon JSON is valid");
        let f = PerceptronFile {
            format: MODEL_FORMAT,
            kind: KIND.into(),
            tags: Upos::ALL.iter().map(|t| t.name().to_string()).collect(),
            tagdict: self
                .tagdict
                .iter()
                .map(|(w, t)| (w.clone(), t.name().to_string()))
                .collect(),
            weights,
            lexicon,
            features: Some(self.features.version()),
            clusters: (!self.clusters.is_empty()).then(|| {
                self.clusters
                    .entries()
                    .into_iter()
                    .map(|(w, b, n)| (w.to_string(), prefix_str((b, n), n)))
                    .collect()
            }),
        };
        serde_json::to_string(&f).expect("plain data serialises")
    }

    /// Save (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, self.to_json().as_bytes())
    }

    /// Parse a saved model (`path` names the source in errors).
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let f: PerceptronFile = serde_json::from_str(text).map_err(|e| model_err(path, e))?;
        check_header(path, f.format, &f.kind, KIND, &f.tags)?;
        let lexicon = LexiconTagger::from_json(&f.lexicon.to_string(), path)?;
        let v = f.features.unwrap_or(1);
        let features = FeatureSet::from_version(v).ok_or_else(|| crate::Error::Parse {
            path: path.to_path_buf(),
            line: 1,
            msg: format!("tagger feature set {v} is not supported (this build knows 1, 2 and 3)"),
        })?;
        let mut entries = Vec::new();
        for (w, bits) in f.clusters.unwrap_or_default() {
            if bits.len() > 30 || !bits.bytes().all(|b| b == b'0' || b == b'1') {
                return Err(crate::Error::Parse {
                    path: path.to_path_buf(),
                    line: 1,
                    msg: format!("word cluster {bits:?} of {w:?} is not a bit string of ≤ 30"),
                });
            }
            let b = bits.bytes().fold(0u32, |a, c| a << 1 | u32::from(c - b'0'));
            entries.push((w, b, bits.len() as u8));
        }
        let clusters = Clusters::from_entries(entries);
        let mut weights = FeatMap::default();
        for (h, ws) in f.weights {
            let mut row = [0f32; NTAGS];
            for (k, x) in ws {
                let slot = row.get_mut(k as usize).ok_or_else(|| crate::Error::Parse {
                    path: path.to_path_buf(),
                    line: 1,
                    msg: format!("weight for tag index {k} (there are {NTAGS} tags)"),
                })?;
                *slot = x;
            }
            weights.insert(h, row);
        }
        let tagdict = f
            .tagdict
            .into_iter()
            .map(|(w, t)| Ok((w, model_tag(path, &t)?)))
            .collect::<Result<_>>()?;
        Ok(PerceptronTagger {
            weights,
            tagdict,
            lexicon,
            features,
            clusters,
        })
    }
}

impl Tagger for PerceptronTagger {
    fn name(&self) -> String {
        "perceptron".into()
    }
    fn tag_next(&self, words: &[&str], prev: &[Upos]) -> Upos {
        let w = words[words.len() - 1];
        if let Some(&t) = self.tagdict.get(w) {
            return t;
        }
        let mut feats = Vec::with_capacity(48);
        extract(
            self.features,
            &self.lexicon,
            &self.clusters,
            words,
            prev,
            &mut feats,
        );
        let mut s = [0f32; NTAGS];
        let mut hits = 0;
        for f in &feats {
            if let Some(wf) = self.weights.get(f) {
                hits += 1;
                for (sk, wk) in s.iter_mut().zip(wf) {
                    *sk += wk;
                }
            }
        }
        if hits == 0 || s.iter().all(|&x| x == 0.0) {
            // Nothing learnt applies (tiny training sets): fall back to the lexicon.
            return self.lexicon.lookup(w, words.len() == 1).0;
        }
        Upos::ALL[argmax(&s)]
    }
}

#[derive(Serialize, Deserialize)]
struct PerceptronFile {
    format: u32,
    kind: String,
    tags: Vec<String>,
    tagdict: BTreeMap<String, String>,
    weights: Vec<(u64, Vec<(u8, f32)>)>,
    lexicon: serde_json::Value,
    /// Feature-set version (absent in models written before feature set 2: version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    features: Option<u32>,
    /// Word clusters (feature set 3): word → bit string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clusters: Option<BTreeMap<String, String>>,
}
