//! asa-lth: structured-sparsity kernels (2:4 GEMM, masked flash attention, exact top-k
//! pruning) with a CPU twin for each, and the training harness for the Lottery Ticket vs
//! Atomic Semantic Attention experiments. See README.md and DESIGN.md.

pub mod backend;
pub mod bench;
pub mod cli;
pub mod data;
pub mod error;
pub mod experiments;
pub mod io;
pub mod ling;
pub mod lth;
pub mod mask;
pub mod model;
pub mod provenance;
pub mod rng;
pub mod sparse;
pub mod stats;
pub mod train;

pub use error::{Error, Result};
