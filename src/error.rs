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
