//! File-level backup of an Event Store node's database directory
//! (`backup-and-on-disk-layout.md` §7).
//!
//! Only [`verify`] exists so far: `standby verify-backup` checks a copied or restored directory
//! offline with the `layout` crate's verifier. Creating, listing and restoring backup sets (a
//! repository of them) come with the next issue; the copy order they will follow, index →
//! checkpoints → chunks, is why the verifier treats an index ahead of `chaser.chk` as damage.

pub mod verify;
