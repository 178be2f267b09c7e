//! The binary, versioned, compressed tagger model format (`.tagger`).
//!
//! Layout (integers little-endian):
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `ASATAGGR` |
//! | 4 | container format version ([`BINARY_FORMAT`]) |
//! | 4 | header length `h` |
//! | `h` | header: UTF-8 JSON, [`ModelHeader`] (kind, feature set, provenance, licence, training command, accuracies, payload length) |
//! | rest | payload: zlib (deflate + Adler-32), exactly `payload_bytes` long |
//!
//! The decompressed payload of a perceptron holds its lexicon (JSON), its tag dictionary and
//! its weights, quantised to integers with one scale per model: feature hashes sorted and
//! delta-coded as LEB128 varints, then per feature a 17-bit mask of the tags with a non-zero
//! weight and each such weight as a zig-zag varint. Every way a file can be wrong — too short,
//! a foreign file, another version, a damaged header or payload — is a named
//! [`Error::Parse`], never a panic.

use super::perceptron::{FeatureSet, PerceptronTagger, KIND};
use super::LexiconTagger;
use crate::ling::compat::NTAGS;
use crate::ling::Upos;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// First bytes of every binary tagger model.
pub const MAGIC: [u8; 8] = *b"ASATAGGR";

/// Version of the binary container this build reads and writes.
pub const BINARY_FORMAT: u32 = 1;

/// Largest quantised weight magnitude.
const QMAX: f32 = 32767.0;

/// The JSON header of a binary model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelHeader {
    /// Model kind (`"perceptron"`).
    pub kind: String,
    /// Feature-set version the weights belong to.
    pub feature_set: u32,
    /// The tag names, in the order weights are stored.
    pub tags: Vec<String>,
    /// Where the training data came from.
    pub provenance: String,
    /// Licence of the model (a derivative of its training data).
    pub licence: String,
    /// The command that produced the file.
    pub command: String,
    /// Token accuracy on a development set, when one was given at training time.
    pub dev_accuracy: Option<f64>,
    /// Token accuracy on a test set, when one was given at training time.
    pub test_accuracy: Option<f64>,
    /// Length of the compressed payload that follows the header.
    pub payload_bytes: u64,
}

fn perr(path: &Path, msg: impl Into<String>) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line: 1,
        msg: msg.into(),
    }
}

/// Whether `bytes` start with the binary model magic.
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A cursor over the decompressed payload; running out is a named error.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn short(&self, what: &str) -> Error {
        perr(
            self.path,
            format!(
                "corrupted tagger model payload: it ends inside the {what} (byte {})",
                self.pos
            ),
        )
    }
    fn varint(&mut self, what: &str) -> Result<u64> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let &b = self.buf.get(self.pos).ok_or_else(|| self.short(what))?;
            self.pos += 1;
            x |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err(perr(
            self.path,
            format!("corrupted tagger model payload: overlong number in the {what}"),
        ))
    }
    fn bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let n = self.varint(what)? as usize;
        let end = self.pos.checked_add(n).ok_or_else(|| self.short(what))?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.short(what))?;
        self.pos = end;
        Ok(b)
    }
    fn str(&mut self, what: &str) -> Result<&'a str> {
        let b = self.bytes(what)?;
        std::str::from_utf8(b).map_err(|_| {
            perr(
                self.path,
                format!("corrupted tagger model payload: invalid UTF-8 in the {what}"),
            )
        })
    }
    fn f32(&mut self, what: &str) -> Result<f32> {
        let b = self
            .buf
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.short(what))?;
        self.pos += 4;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Encode `p` as a binary model with `header` (its `kind`, `feature_set`, `tags` and
/// `payload_bytes` are filled in here). Deterministic: the same model gives the same bytes.
pub fn encode(p: &PerceptronTagger, header: &ModelHeader) -> Vec<u8> {
    let mut payload = Vec::new();
    put_bytes(&mut payload, p.lexicon().to_json().as_bytes());
    let mut dict: Vec<(&String, &Upos)> = p.tagdict().iter().collect();
    dict.sort();
    put_varint(&mut payload, dict.len() as u64);
    for (w, &t) in dict {
        put_bytes(&mut payload, w.as_bytes());
        payload.push(t as u8);
    }
    let mut feats: Vec<(u64, &[f32; NTAGS])> = p.weights().map(|(&h, w)| (h, w)).collect();
    feats.sort_by_key(|&(h, _)| h);
    let wmax = feats
        .iter()
        .flat_map(|(_, w)| w.iter())
        .fold(0f32, |m, &x| m.max(x.abs()));
    let scale = if wmax > 0.0 { wmax / QMAX } else { 1.0 };
    let quant: Vec<(u64, [i32; NTAGS])> = feats
        .into_iter()
        .map(|(h, w)| (h, w.map(|x| (x / scale).round() as i32)))
        .filter(|(_, q)| q.iter().any(|&x| x != 0))
        .collect();
    payload.extend_from_slice(&scale.to_le_bytes());
    put_varint(&mut payload, quant.len() as u64);
    let mut last = 0u64;
    for (h, q) in &quant {
        put_varint(&mut payload, h - last);
        last = *h;
        let mask = q
            .iter()
            .enumerate()
            .filter(|(_, &x)| x != 0)
            .fold(0u64, |m, (k, _)| m | 1 << k);
        put_varint(&mut payload, mask);
        for &x in q.iter().filter(|&&x| x != 0) {
            put_varint(&mut payload, ((x << 1) ^ (x >> 31)) as u32 as u64);
        }
    }
    if p.feature_set() == FeatureSet::V3 {
        // Word clusters: count, then (word, path length, path bits) sorted by word.
        let e = p.clusters().entries();
        put_varint(&mut payload, e.len() as u64);
        for (w, bits, n) in e {
            put_bytes(&mut payload, w.as_bytes());
            payload.push(n);
            put_varint(&mut payload, u64::from(bits));
        }
    }
    let z = miniz_oxide::deflate::compress_to_vec_zlib(&payload, 9);
    let header = ModelHeader {
        kind: KIND.into(),
        feature_set: p.feature_set().version(),
        tags: Upos::ALL.iter().map(|t| t.name().to_string()).collect(),
        payload_bytes: z.len() as u64,
        ..header.clone()
    };
    let hjson = serde_json::to_vec_pretty(&header).expect("plain data serialises");
    let mut out = Vec::with_capacity(16 + hjson.len() + z.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&BINARY_FORMAT.to_le_bytes());
    out.extend_from_slice(&(hjson.len() as u32).to_le_bytes());
    out.extend_from_slice(&hjson);
    out.extend_from_slice(&z);
    out
}

/// Read only the header of a binary model (checks magic, version and length).
pub fn decode_header<'a>(bytes: &'a [u8], path: &Path) -> Result<(ModelHeader, &'a [u8])> {
    if bytes.len() < MAGIC.len() || !is_binary(bytes) {
        if MAGIC.starts_with(bytes) {
            return Err(perr(
                path,
                format!(
                    "truncated tagger model: {} bytes, shorter than the magic",
                    bytes.len()
                ),
            ));
        }
        return Err(perr(
            path,
            "not a binary tagger model (wrong magic bytes; expected `ASATAGGR`)",
        ));
    }
    let fixed = |at: usize, what: &str| -> Result<u32> {
        let b = bytes.get(at..at + 4).ok_or_else(|| {
            perr(
                path,
                format!("truncated tagger model: it ends inside the {what}"),
            )
        })?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let version = fixed(8, "format version")?;
    if version != BINARY_FORMAT {
        return Err(perr(
            path,
            format!(
                "binary tagger model format version {version} is not supported (this build \
                 reads version {BINARY_FORMAT})"
            ),
        ));
    }
    let hlen = fixed(12, "header length")? as usize;
    let hbytes = bytes.get(16..16 + hlen).ok_or_else(|| {
        perr(
            path,
            format!(
                "truncated tagger model: header of {hlen} bytes, file of {} bytes",
                bytes.len()
            ),
        )
    })?;
    let header: ModelHeader = serde_json::from_slice(hbytes)
        .map_err(|e| perr(path, format!("corrupted tagger model header: {e}")))?;
    let payload = &bytes[16 + hlen..];
    if (payload.len() as u64) < header.payload_bytes {
        return Err(perr(
            path,
            format!(
                "truncated tagger model: payload of {} bytes, header promises {}",
                payload.len(),
                header.payload_bytes
            ),
        ));
    }
    if (payload.len() as u64) > header.payload_bytes {
        return Err(perr(
            path,
            format!(
                "corrupted tagger model: {} bytes after the payload",
                payload.len() as u64 - header.payload_bytes
            ),
        ));
    }
    Ok((header, payload))
}

/// Decode a binary model.
pub fn decode(bytes: &[u8], path: &Path) -> Result<(ModelHeader, PerceptronTagger)> {
    let (header, z) = decode_header(bytes, path)?;
    if header.kind != KIND {
        return Err(perr(
            path,
            format!(
                "unknown tagger kind {:?} in binary model (expected \"{KIND}\")",
                header.kind
            ),
        ));
    }
    let fs = FeatureSet::from_version(header.feature_set).ok_or_else(|| {
        perr(
            path,
            format!(
                "tagger feature set {} is not supported (this build knows 1, 2 and 3)",
                header.feature_set
            ),
        )
    })?;
    let want: Vec<&str> = Upos::ALL.iter().map(|t| t.name()).collect();
    if header.tags != want {
        return Err(perr(
            path,
            format!(
                "tagger model tag set {:?} differs from this build's {want:?}",
                header.tags
            ),
        ));
    }
    let payload =
        miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(z, 1 << 30).map_err(|e| {
            perr(
                path,
                format!("corrupted tagger model payload (decompression failed: {e:?})"),
            )
        })?;
    let mut r = Reader {
        buf: &payload,
        pos: 0,
        path,
    };
    let lexicon = LexiconTagger::from_json(r.str("lexicon")?, path)?;
    let ndict = r.varint("tag dictionary")? as usize;
    let mut tagdict = std::collections::HashMap::with_capacity(ndict.min(1 << 20));
    for _ in 0..ndict {
        let w = r.str("tag dictionary")?.to_string();
        let t = r.bytes_fixed1("tag dictionary")?;
        let t = Upos::from_index(t as usize).ok_or_else(|| {
            perr(
                path,
                format!("corrupted tagger model payload: tag index {t} in the tag dictionary"),
            )
        })?;
        tagdict.insert(w, t);
    }
    let scale = r.f32("weights")?;
    if !scale.is_finite() || scale <= 0.0 {
        return Err(perr(
            path,
            format!("corrupted tagger model payload: weight scale {scale}"),
        ));
    }
    let n = r.varint("weights")? as usize;
    let mut weights = Vec::with_capacity(n.min(1 << 24));
    let mut h = 0u64;
    for _ in 0..n {
        h = h.wrapping_add(r.varint("weights")?);
        let mask = r.varint("weights")?;
        if mask >> NTAGS != 0 {
            return Err(perr(
                path,
                format!("corrupted tagger model payload: tag mask {mask:#x}"),
            ));
        }
        let mut row = [0f32; NTAGS];
        for (k, slot) in row.iter_mut().enumerate() {
            if mask & (1 << k) != 0 {
                let z = r.varint("weights")?;
                let q = ((z >> 1) as i64) ^ -((z & 1) as i64);
                *slot = q as f32 * scale;
            }
        }
        weights.push((h, row));
    }
    let mut entries = Vec::new();
    if fs == FeatureSet::V3 {
        let n = r.varint("word clusters")? as usize;
        entries.reserve(n.min(1 << 20));
        for _ in 0..n {
            let w = r.str("word clusters")?.to_string();
            let len = r.bytes_fixed1("word clusters")?;
            let bits = r.varint("word clusters")?;
            if len > 30 || bits >> len != 0 {
                return Err(perr(
                    path,
                    format!("corrupted tagger model payload: cluster path {bits:#x}/{len}"),
                ));
            }
            entries.push((w, bits as u32, len));
        }
    }
    if r.pos != payload.len() {
        return Err(perr(
            path,
            format!(
                "corrupted tagger model payload: {} unread bytes",
                payload.len() - r.pos
            ),
        ));
    }
    Ok((
        header,
        PerceptronTagger::from_parts(
            weights,
            tagdict,
            lexicon,
            fs,
            super::clusters::Clusters::from_entries(entries),
        ),
    ))
}

impl Reader<'_> {
    fn bytes_fixed1(&mut self, what: &str) -> Result<u8> {
        let &b = self.buf.get(self.pos).ok_or_else(|| self.short(what))?;
        self.pos += 1;
        Ok(b)
    }
}

/// Read a binary model file.
pub fn load(path: &Path) -> Result<(ModelHeader, PerceptronTagger)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes, path)
}
