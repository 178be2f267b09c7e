//! The GPT-style decoder, written once against [`crate::backend::Ops`]: configuration, the
//! named parameter table, forward/backward, the AdamW step with prune masks, and E4's optional
//! tag-pair attention bias.

pub mod config;
pub mod gpt;
pub mod params;
pub mod tag_bias;

pub use config::GptConfig;
pub use gpt::{AdamWConfig, AttentionCapture, Gpt, LossStats, NamedTensor};
pub use params::{ParamKind, ParamSpec, ParamTable};
pub use tag_bias::TagBiasInit;
