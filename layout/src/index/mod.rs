//! The index directory (`<db>/index` unless `--index` moves it), as far as a backup needs it:
//! `indexmap`, the PTables it lists, and the Bloom filters (per PTable and stream existence).

pub mod bloom;
pub mod indexmap;
pub mod ptable;

pub use indexmap::{IndexMap, IndexMapEntry, ParsedIndexMap, INDEXMAP_FILE_NAME};
pub use ptable::{write_ptable, IndexEntry, PTableFile, PTableInfo};
