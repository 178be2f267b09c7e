//! Sparsity on the host side, shared by both backends: the exact magnitude top-k pruning rule
//! (global or per tensor) that Lottery Ticket pruning uses, and 2:4 selection (DESIGN.md §3).
//!
//! - [`topk`]: prune exactly `ceil(f · remaining)` unpruned weights of a list of named tensors,
//!   smallest |w| first, ties to the lower global index; a threaded radix select on the CPU.
//!   The CUDA twin is `crate::backend::cuda::topk` (kernels/topk.cu), which reuses this
//!   module's selection logic ([`topk::RadixSelect`], [`topk::tie_cut`]) so both give the same
//!   masks and reports.
//! - [`two_four`]: keep the 2 largest |w| of every aligned group of 4 along K.
//! - [`format24`]: the canonical compressed 2:4 format and the `mma.sp` metadata reorder;
//!   [`gemm24`]: its CPU GEMM; [`mma_emu`]: a warp emulator of `mma.sp` from the PTX ISA.

pub mod format24;
pub mod gemm24;
pub mod mma_emu;
pub mod topk;
pub mod two_four;

pub use format24::Sparse24;
pub use gemm24::gemm24;
pub use topk::{
    prune, prune_global, prune_per_tensor, PruneReport, PruneScope, PruneTensor, SelectionReport,
    TensorPruneReport, TopkWeight,
};
pub use two_four::{two_four_keep, two_four_mask};
