//! The GPT-style decoder, written once against [`crate::backend::Ops`]: configuration, the
//! named parameter table, forward/backward, and the AdamW step with prune masks.

pub mod config;
pub mod gpt;
pub mod params;

pub use config::GptConfig;
pub use gpt::{AdamWConfig, Gpt, LossStats, NamedTensor};
pub use params::{ParamKind, ParamSpec, ParamTable};
