//! Attention masks: the bit-packed host form ([`bits`]) and its tile classification
//! ([`tiles`]), following DESIGN.md §3.

pub mod bits;
pub mod tiles;

pub use bits::BitMask;
pub use tiles::{TileClass, TileLists, TileMap};
