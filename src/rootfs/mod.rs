//! Flattened root disks: an image's OCI tar layers become one read-only EROFS image.
//!
//! Built in-process from the tar streams, without root and without creating any file
//! of the layers on the host. The metadata tree is kept in memory; file data goes
//! straight from the (decompressed) stream into the image file. Identical layers give
//! byte-identical images. See `DESIGN.md` beside this file for the format choices and
//! the threat model.
//!
//! Entry points: [`RootfsCache::ensure`] for the image store, [`flatten_layers`] for
//! a one-off build into any [`ImageSink`], [`Flattener`] for streams.

mod apply;
mod cache;
mod data;
mod erofs;
mod error;
mod flatten;
mod layer;
mod limits;
mod path;
mod sink;
pub mod tar;
mod tree;

pub use crate::error::error_chain;
pub use cache::{build_to, BuiltRootfs, CachedDisk, RootfsCache};
pub use erofs::ImageInfo;
pub use error::{EntryError, FlattenError};
pub use flatten::{flatten_layers, Flattened, Flattener};
pub use layer::{chain_id, Compression, LayerInput};
pub use limits::Limits;
pub use path::PathError;
pub use sink::{ImageSink, MemorySink};
pub use tree::TreeError;
