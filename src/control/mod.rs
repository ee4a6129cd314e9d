//! The control plane: the secondary's epochs, its write fence, and the two commands that promote
//! it (docs/failover.md).
//!
//! * [`record`]: the control stream `$standby-control` and its epoch records.
//! * [`acl`]: the `$settings` documents of the fence (pure).
//! * [`setup`]: what `run` does to a secondary before replicating into it.
//! * [`tail`]: the primary's events after the last applied position, checked on the secondary.
//! * [`promote`]: `promote` and `switchover`, the only code that makes a secondary a primary.
//! * [`divergence`]: the export of an old primary's orphaned tail.

pub mod acl;
pub mod divergence;
pub mod promote;
pub mod record;
pub mod setup;
pub mod tail;

pub use promote::{
    promote, switchover, Fence, Outcome, PromoteError, PromoteOptions, PromoteReport,
};
pub use record::{Control, EpochRecord, Role, CONTROL_STREAM};
