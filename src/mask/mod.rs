//! Attention masks: the bit-packed host form ([`bits`]) and its tile classification
//! ([`tiles`]), following DESIGN.md §3; the ASA builder ([`asa`]), density-matched nulls
//! ([`nulls`]), statistics ([`stats`]) and pictures ([`svg`]).

pub mod asa;
pub mod bits;
pub mod nulls;
pub mod stats;
pub mod svg;
pub mod tiles;

pub use asa::{AsaMaskBuilder, Refiner, UnknownTag};
pub use bits::BitMask;
pub use tiles::{TileClass, TileLists, TileMap};
