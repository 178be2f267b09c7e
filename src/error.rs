//! The library's error type. Every variant names what was wrong (op, tensor, shape, file)
//! so a user never has to read a backtrace.

use std::path::PathBuf;

/// Errors returned by the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A buffer does not have the length its shape implies.
    #[error("{op}: tensor `{tensor}` has {got} elements, expected {expected} ({shape})")]
    Shape {
        op: &'static str,
        tensor: &'static str,
        got: usize,
        expected: usize,
        shape: String,
    },
    /// A model or run configuration that cannot work.
    #[error("invalid config: {0}")]
    Config(String),
    /// An attention mask that does not match the batch it is applied to.
    #[error("attention mask: {0}")]
    Mask(String),
    /// A non-finite value where none may appear.
    #[error("non-finite value in `{tensor}` at index {index}: {value}")]
    NonFinite {
        tensor: String,
        index: usize,
        value: f32,
    },
    /// Work whose memory estimate exceeds what the machine or device has, refused before it
    /// starts.
    #[error("not enough memory: {0}")]
    Memory(String),
    /// A device (CUDA) failure or an unavailable device.
    #[error("device: {0}")]
    Device(String),
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A malformed input file, with the line where the problem is.
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
}

/// Result alias for the library.
pub type Result<T> = std::result::Result<T, Error>;

/// Check that `len` equals `expected`, naming the op, tensor and shape otherwise.
pub fn check_len(
    op: &'static str,
    tensor: &'static str,
    len: usize,
    expected: usize,
    shape: impl FnOnce() -> String,
) -> Result<()> {
    if len == expected {
        Ok(())
    } else {
        Err(Error::Shape {
            op,
            tensor,
            got: len,
            expected,
            shape: shape(),
        })
    }
}

/// A serde message about an unknown field (`unknown field `stepz`, expected one of `steps`,
/// …`) with the nearest valid name appended (`did you mean `steps`?`); other messages as
/// they are.
pub fn suggest_field(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_string();
    };
    let Some((bad, expected)) = rest.split_once('`') else {
        return msg.to_string();
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (edit_distance(bad, name), name))
        .min();
    match best {
        Some((d, name)) if d <= bad.len().max(3) / 2 + 1 => {
            format!("{msg} (did you mean `{name}`?)")
        }
        _ => msg.to_string(),
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::suggest_field;

    #[test]
    fn nearest_field_names() {
        let m = "unknown field `stepz`, expected one of `steps`, `seed`, `lr` at line 1 column 9";
        assert!(suggest_field(m).ends_with("(did you mean `steps`?)"));
        let far = "unknown field `colour`, expected one of `steps`, `seed`";
        assert_eq!(suggest_field(far), far);
        assert_eq!(suggest_field("missing field `x`"), "missing field `x`");
    }
}
