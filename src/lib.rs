//! asa-lth: structured-sparsity kernels (2:4 GEMM, masked flash attention, exact top-k
//! pruning) with a CPU twin for each, and the training harness for the Lottery Ticket vs
//! Atomic Semantic Attention experiments. See README.md and DESIGN.md.

pub mod backend;
pub mod error;
pub mod mask;
pub mod model;
pub mod provenance;
pub mod rng;

pub use error::{Error, Result};
