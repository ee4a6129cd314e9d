//! Typed positions and versions: the numbers that identify *where* something is in an Event Store
//! log or stream, and the fencing epoch of this replicator.
//!
//! Every number that crosses a module boundary in `standby` goes through one of these types, so a
//! `$all` position can never be confused with an event number, an expected version or an epoch.
//!
//! * [`Position`]: a `$all` position, the pair (commit, prepare) of logical log offsets. Its text form
//!   is the 32-hex-digit URL segment of the AtomPub API (contract §3.2, server
//!   `src/KurrentDB.Core/Data/TFPos.cs`), its log form is `C:n/P:n`.
//! * [`LogPosition`]: one logical log offset as reported by `/gossip` checkpoints or the `*.chk`
//!   files (contract §9, §10).
//! * [`StreamRevision`]: an event number inside one stream (tombstone = `i64::MAX`).
//! * [`ExpectedVersion`]: the optimistic-concurrency condition of a write, with exactly one mapping to
//!   the `ES-ExpectedVersion` header value ([`ExpectedVersion::header_value`]).
//! * [`CurrentVersion`]: the stream state the server reports in `ES-CurrentVersion` after a
//!   wrong-expected-version failure.
//! * [`Epoch`]: the fencing term of this replicator (bumped by `promote`).
//!
//! The server stores all of these as signed 64-bit integers, so every type here rejects values above
//! `i64::MAX`: such a value can only come from corrupted input and would not survive a round trip to
//! the server.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest value the server can store in any of its signed 64-bit position/number fields.
const MAX_SIGNED: u64 = i64::MAX as u64;

/// A position in the `$all` stream: (commit position, prepare position).
///
/// Ordered by commit position first, then prepare position, which is the order of the log. For
/// events written by ordinary (implicit-transaction) writes both halves are equal, but events from
/// explicit TCP transactions and logs written before August 2013 have `commit != prepare`, and the
/// `previous` link of a forward `$all` page has prepare `0` (contract §3.2, §3.4). Never assume the two
/// are equal.
///
/// Invariant: both fields are `<= i64::MAX` (the server stores them as `long` and rejects negative
/// parts with 400).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Logical log offset of the commit record (`<= i64::MAX`).
    commit: u64,
    /// Logical log offset of the prepare record (`<= i64::MAX`).
    prepare: u64,
}

impl Position {
    /// The start of the log, `00000000000000000000000000000000`.
    pub const START: Position = Position {
        commit: 0,
        prepare: 0,
    };

    /// Builds a position; `None` if either half is above `i64::MAX`.
    pub const fn new(commit: u64, prepare: u64) -> Option<Position> {
        if commit > MAX_SIGNED || prepare > MAX_SIGNED {
            None
        } else {
            Some(Position { commit, prepare })
        }
    }

    /// The position whose commit and prepare halves both equal `log`.
    ///
    /// This is where a forward `$all` read starts after restoring a backup whose `chaser.chk` holds
    /// `log` (contract §10), and the shape of every position the server hands out for
    /// implicit-transaction writes.
    pub const fn at(log: LogPosition) -> Position {
        Position {
            commit: log.0,
            prepare: log.0,
        }
    }

    /// The commit half.
    pub const fn commit(self) -> u64 {
        self.commit
    }

    /// The prepare half.
    pub const fn prepare(self) -> u64 {
        self.prepare
    }

    /// The 32-hex-digit URL segment, upper case (`{commit:016X}{prepare:016X}`, the server's own
    /// format, contract §3.2).
    pub fn to_hex(self) -> String {
        format!("{:016X}{:016X}", self.commit, self.prepare)
    }
}

impl fmt::Display for Position {
    /// Log form, e.g. `C:12713/P:12713`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C:{}/P:{}", self.commit, self.prepare)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position(C:{}/P:{})", self.commit, self.prepare)
    }
}

/// Which half of a [`Position`] a parse error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionPart {
    /// The first 16 hex digits.
    Commit,
    /// The last 16 hex digits.
    Prepare,
}

impl fmt::Display for PositionPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PositionPart::Commit => "commit",
            PositionPart::Prepare => "prepare",
        })
    }
}

/// Why a string is not a `$all` position URL segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParsePositionError {
    /// Not exactly 32 characters (bytes).
    #[error(
        "a $all position must be exactly 32 hex digits (16 for the commit position, 16 for the \
         prepare position), got {len} bytes; copy the position from a feed link or checkpoint unchanged"
    )]
    WrongLength {
        /// Length of the input in bytes.
        len: usize,
    },
    /// Contains a character other than `0-9`, `a-f`, `A-F`.
    #[error(
        "a $all position may only contain hex digits 0-9 and A-F; copy the position from a feed \
         link or checkpoint unchanged"
    )]
    NotHex,
    /// A half has its high bit set, i.e. is negative as the server's signed 64-bit value.
    #[error(
        "the {part} half of the $all position is negative (high bit set); the server answers 400 for \
         such positions and never hands them out, so the value is corrupted"
    )]
    Negative {
        /// Which half is negative.
        part: PositionPart,
    },
}

impl FromStr for Position {
    type Err = ParsePositionError;

    /// Parses the 32-hex-digit URL segment; either case is accepted (as the server does).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(ParsePositionError::WrongLength { len: bytes.len() });
        }
        // Checked byte by byte: `u64::from_str_radix` would also accept a leading `+`.
        if !bytes.iter().all(u8::is_ascii_hexdigit) {
            return Err(ParsePositionError::NotHex);
        }
        // All bytes are ASCII, so slicing at 16 is on a character boundary.
        let half = |text: &str, part| {
            let value = u64::from_str_radix(text, 16).map_err(|_| ParsePositionError::NotHex)?;
            if value > MAX_SIGNED {
                Err(ParsePositionError::Negative { part })
            } else {
                Ok(value)
            }
        };
        let commit = half(&s[..16], PositionPart::Commit)?;
        let prepare = half(&s[16..], PositionPart::Prepare)?;
        Ok(Position { commit, prepare })
    }
}

impl Serialize for Position {
    /// Serialized as the 32-hex-digit string, the same text the server uses in URLs.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One logical offset in the transaction log (`writer.chk`, `chaser.chk`, gossip
/// `lastCommitPosition`/`writerCheckpoint`/`chaserCheckpoint`).
///
/// Same number space as the halves of a [`Position`] (contract §10). Invariant: `<= i64::MAX`; the
/// server's "unset" value `-1` is represented as `Option::<LogPosition>::None`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct LogPosition(u64);

impl LogPosition {
    /// Builds a log position; `None` above `i64::MAX`.
    pub const fn new(value: u64) -> Option<LogPosition> {
        if value > MAX_SIGNED {
            None
        } else {
            Some(LogPosition(value))
        }
    }

    /// Converts the server's signed value; `None` for negative values (`-1` means "not set").
    pub const fn from_signed(value: i64) -> Option<LogPosition> {
        if value < 0 {
            None
        } else {
            Some(LogPosition(value as u64))
        }
    }

    /// The offset in bytes.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<u64> for LogPosition {
    type Error = OutOfRange;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        LogPosition::new(value).ok_or(OutOfRange { value })
    }
}

impl From<LogPosition> for u64 {
    fn from(value: LogPosition) -> u64 {
        value.0
    }
}

/// A number above `i64::MAX` where the server only stores signed 64-bit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{value} is above the largest value the server stores (9223372036854775807); the input is corrupted")]
pub struct OutOfRange {
    /// The rejected value.
    pub value: u64,
}

/// The number of an event inside one stream (`eventNumber`).
///
/// Invariant: `<= i64::MAX`. [`StreamRevision::TOMBSTONE`] (`i64::MAX`) is the number of the
/// hard-delete tombstone record (contract §5.7).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct StreamRevision(u64);

impl StreamRevision {
    /// The first event of a stream.
    pub const START: StreamRevision = StreamRevision(0);

    /// Event number of a hard-delete tombstone (`$streamDeleted`), `9223372036854775807`.
    pub const TOMBSTONE: StreamRevision = StreamRevision(MAX_SIGNED);

    /// Builds a revision; `None` above `i64::MAX`.
    pub const fn new(value: u64) -> Option<StreamRevision> {
        if value > MAX_SIGNED {
            None
        } else {
            Some(StreamRevision(value))
        }
    }

    /// Converts the server's signed value; `None` for negative values.
    pub const fn from_signed(value: i64) -> Option<StreamRevision> {
        if value < 0 {
            None
        } else {
            Some(StreamRevision(value as u64))
        }
    }

    /// The event number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The revision after this one; `None` for the tombstone (nothing follows it).
    pub const fn next(self) -> Option<StreamRevision> {
        if self.0 >= MAX_SIGNED {
            None
        } else {
            Some(StreamRevision(self.0 + 1))
        }
    }

    /// The revision before this one; `None` for [`StreamRevision::START`].
    pub const fn previous(self) -> Option<StreamRevision> {
        if self.0 == 0 {
            None
        } else {
            Some(StreamRevision(self.0 - 1))
        }
    }

    /// Whether this is the hard-delete tombstone number.
    pub const fn is_tombstone(self) -> bool {
        self.0 == MAX_SIGNED
    }
}

impl fmt::Display for StreamRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<u64> for StreamRevision {
    type Error = OutOfRange;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        StreamRevision::new(value).ok_or(OutOfRange { value })
    }
}

impl From<StreamRevision> for u64 {
    fn from(value: StreamRevision) -> u64 {
        value.0
    }
}

/// Why a string is not an event number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event number must be a decimal integer between 0 and 9223372036854775807")]
pub struct ParseRevisionError;

impl FromStr for StreamRevision {
    type Err = ParseRevisionError;

    /// Parses a decimal event number as it appears in URLs (`/streams/s/42`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseRevisionError);
        }
        s.parse::<u64>()
            .ok()
            .and_then(StreamRevision::new)
            .ok_or(ParseRevisionError)
    }
}

/// The condition a write puts on the current version of the stream (`ES-ExpectedVersion`).
///
/// [`ExpectedVersion::header_value`] is the only mapping to the wire value (contract §5.2). `-3`
/// (`Invalid`) and `-5` (`SoftDeleted`, KurrentDB 26.0.3+ only) are deliberately not representable:
/// `-3` makes the server drop the write without an error status.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ExpectedVersion {
    /// No condition (`-2`); only weakly idempotent on retries (contract §5.5).
    Any,
    /// The stream must not exist (`-1`); a soft-deleted stream counts as not existing.
    NoStream,
    /// The stream (or its metastream) must exist (`-4`).
    StreamExists,
    /// The last event number must be exactly this (strongly idempotent, contract §5.5).
    Exact(StreamRevision),
}

impl ExpectedVersion {
    /// The `ES-ExpectedVersion` header value: `-2`, `-1`, `-4` or `N`.
    pub const fn header_value(self) -> i64 {
        match self {
            ExpectedVersion::Any => -2,
            ExpectedVersion::NoStream => -1,
            ExpectedVersion::StreamExists => -4,
            // Invariant of StreamRevision: <= i64::MAX, so the cast is lossless.
            ExpectedVersion::Exact(revision) => revision.0 as i64,
        }
    }

    /// Inverse of [`ExpectedVersion::header_value`]; `None` for `-3`, `-5` and other values the
    /// replicator must never send.
    pub const fn from_header_value(value: i64) -> Option<ExpectedVersion> {
        match value {
            -2 => Some(ExpectedVersion::Any),
            -1 => Some(ExpectedVersion::NoStream),
            -4 => Some(ExpectedVersion::StreamExists),
            n if n >= 0 => Some(ExpectedVersion::Exact(StreamRevision(n as u64))),
            _ => None,
        }
    }

    /// The expected version that writes `revision` as the next event of its stream: `NoStream` for
    /// event 0, otherwise `Exact(revision - 1)`.
    ///
    /// This is the strongly idempotent form the replicator uses to copy event `revision`
    /// (contract §3.6, §7).
    pub const fn to_write(revision: StreamRevision) -> ExpectedVersion {
        match revision.previous() {
            None => ExpectedVersion::NoStream,
            Some(before) => ExpectedVersion::Exact(before),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(revision) => write!(f, "{revision}"),
        }
    }
}

/// The stream state reported in `ES-CurrentVersion` / `Kurrent-CurrentVersion` after a
/// wrong-expected-version failure (contract §5.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CurrentVersion {
    /// `-1`: the stream has no events (never written, or soft-deleted without recreation).
    NoStream,
    /// The number of the stream's last event.
    Revision(StreamRevision),
}

impl CurrentVersion {
    /// The expected version that matches this state exactly.
    pub const fn as_expected(self) -> ExpectedVersion {
        match self {
            CurrentVersion::NoStream => ExpectedVersion::NoStream,
            CurrentVersion::Revision(revision) => ExpectedVersion::Exact(revision),
        }
    }
}

impl fmt::Display for CurrentVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurrentVersion::NoStream => f.write_str("no stream (-1)"),
            CurrentVersion::Revision(revision) => write!(f, "{revision}"),
        }
    }
}

/// Why a header value is not a current version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a current version must be -1 or an event number between 0 and 9223372036854775807")]
pub struct ParseCurrentVersionError;

impl FromStr for CurrentVersion {
    type Err = ParseCurrentVersionError;

    /// Parses the header value (surrounding whitespace allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "-1" {
            return Ok(CurrentVersion::NoStream);
        }
        s.parse::<StreamRevision>()
            .map(CurrentVersion::Revision)
            .map_err(|_| ParseCurrentVersionError)
    }
}

/// The fencing term of this replicator: every `promote` moves to the next epoch, and writers refuse
/// work under a stale one.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(u64);

impl Epoch {
    /// The epoch of a freshly initialised replicator.
    pub const INITIAL: Epoch = Epoch(0);

    /// Wraps a stored epoch number.
    pub const fn new(value: u64) -> Epoch {
        Epoch(value)
    }

    /// The epoch number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The following epoch; `None` only if the counter is exhausted (`u64::MAX`, which can only come
    /// from a corrupted store).
    pub const fn next(self) -> Option<Epoch> {
        match self.0.checked_add(1) {
            Some(value) => Some(Epoch(value)),
            None => None,
        }
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_hex_is_upper_case_and_padded() {
        let p = Position::new(0x2F7F, 0x2F7F).unwrap();
        assert_eq!(p.to_hex(), "0000000000002F7F0000000000002F7F");
        assert_eq!(Position::START.to_hex(), "0".repeat(32));
    }

    #[test]
    fn position_parses_recorded_links() {
        // 2013 recording (contract §3.2): commit != prepare.
        let p: Position = "000000000000669400000000000066D2".parse().unwrap();
        assert_eq!((p.commit(), p.prepare()), (0x6694, 0x66D2));
        // Forward-page `previous` link: prepare 0.
        let p: Position = "00000000000032330000000000000000".parse().unwrap();
        assert_eq!((p.commit(), p.prepare()), (0x3233, 0));
        // Empty end page `next` link: prepare i64::MAX is valid.
        let p: Position = "00000000000032337FFFFFFFFFFFFFFF".parse().unwrap();
        assert_eq!(p.prepare(), i64::MAX as u64);
    }

    #[test]
    fn position_accepts_lower_case() {
        let upper: Position = "00000000017BC0D000000000017BC0D0".parse().unwrap();
        let lower: Position = "00000000017bc0d000000000017bc0d0".parse().unwrap();
        assert_eq!(upper, lower);
        assert_eq!(lower.to_hex(), "00000000017BC0D000000000017BC0D0");
    }

    #[test]
    fn position_rejects_bad_text() {
        assert_eq!(
            "".parse::<Position>(),
            Err(ParsePositionError::WrongLength { len: 0 })
        );
        assert_eq!(
            "0".repeat(33).parse::<Position>(),
            Err(ParsePositionError::WrongLength { len: 33 })
        );
        assert_eq!(
            format!("{}G", "0".repeat(31)).parse::<Position>(),
            Err(ParsePositionError::NotHex)
        );
        assert_eq!(
            format!("+{}", "0".repeat(31)).parse::<Position>(),
            Err(ParsePositionError::NotHex)
        );
        // 30 ASCII bytes + one 2-byte character = 32 bytes, must not panic on slicing.
        assert_eq!(
            format!("{}é", "0".repeat(30)).parse::<Position>(),
            Err(ParsePositionError::NotHex)
        );
        assert_eq!(
            "F".repeat(32).parse::<Position>(),
            Err(ParsePositionError::Negative {
                part: PositionPart::Commit
            })
        );
        assert_eq!(
            format!("{}{}", "0".repeat(16), "8".repeat(16)).parse::<Position>(),
            Err(ParsePositionError::Negative {
                part: PositionPart::Prepare
            })
        );
    }

    #[test]
    fn position_new_rejects_values_above_i64_max() {
        assert!(Position::new(i64::MAX as u64, i64::MAX as u64).is_some());
        assert!(Position::new(i64::MAX as u64 + 1, 0).is_none());
        assert!(Position::new(0, u64::MAX).is_none());
    }

    #[test]
    fn position_orders_by_commit_then_prepare() {
        let a = Position::new(1, 9).unwrap();
        let b = Position::new(2, 0).unwrap();
        let c = Position::new(2, 1).unwrap();
        assert!(a < b && b < c);
        assert!(Position::START < a);
    }

    #[test]
    fn position_display_and_serde() {
        let p = Position::new(12713, 12713).unwrap();
        assert_eq!(p.to_string(), "C:12713/P:12713");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"00000000000031A900000000000031A9\"");
        assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), p);
        assert!(serde_json::from_str::<Position>("\"xyz\"").is_err());
        assert!(serde_json::from_str::<Position>("12").is_err());
    }

    #[test]
    fn position_at_log_position() {
        let log = LogPosition::new(38102983).unwrap();
        assert_eq!(
            Position::at(log),
            Position::new(38102983, 38102983).unwrap()
        );
        assert_eq!(LogPosition::from_signed(-1), None);
        assert!(serde_json::from_str::<LogPosition>("9223372036854775808").is_err());
    }

    #[test]
    fn revision_bounds_and_steps() {
        assert_eq!(StreamRevision::TOMBSTONE.get(), 9223372036854775807);
        assert!(StreamRevision::TOMBSTONE.is_tombstone());
        assert_eq!(StreamRevision::TOMBSTONE.next(), None);
        assert_eq!(
            StreamRevision::START.next(),
            Some(StreamRevision::new(1).unwrap())
        );
        assert_eq!(StreamRevision::START.previous(), None);
        assert_eq!(StreamRevision::new(i64::MAX as u64 + 1), None);
        assert_eq!(StreamRevision::from_signed(-1), None);
        assert_eq!("42".parse(), Ok(StreamRevision::new(42).unwrap()));
        assert!("-1".parse::<StreamRevision>().is_err());
        assert!("+1".parse::<StreamRevision>().is_err());
        assert!("9223372036854775808".parse::<StreamRevision>().is_err());
        assert!(serde_json::from_str::<StreamRevision>("9223372036854775808").is_err());
        assert_eq!(StreamRevision::new(7).unwrap().to_string(), "7");
    }

    #[test]
    fn expected_version_header_values() {
        let cases = [
            (ExpectedVersion::Any, -2),
            (ExpectedVersion::NoStream, -1),
            (ExpectedVersion::StreamExists, -4),
            (ExpectedVersion::Exact(StreamRevision::START), 0),
            (ExpectedVersion::Exact(StreamRevision::TOMBSTONE), i64::MAX),
        ];
        for (expected, value) in cases {
            assert_eq!(expected.header_value(), value);
            assert_eq!(ExpectedVersion::from_header_value(value), Some(expected));
        }
        assert_eq!(ExpectedVersion::from_header_value(-3), None);
        assert_eq!(ExpectedVersion::from_header_value(-5), None);
    }

    #[test]
    fn expected_version_to_write() {
        assert_eq!(
            ExpectedVersion::to_write(StreamRevision::START),
            ExpectedVersion::NoStream
        );
        assert_eq!(
            ExpectedVersion::to_write(StreamRevision::new(3).unwrap()),
            ExpectedVersion::Exact(StreamRevision::new(2).unwrap())
        );
    }

    #[test]
    fn current_version_parses_header_values() {
        assert_eq!("-1".parse(), Ok(CurrentVersion::NoStream));
        assert_eq!(
            " 0 ".parse(),
            Ok(CurrentVersion::Revision(StreamRevision::START))
        );
        assert!("-2".parse::<CurrentVersion>().is_err());
        assert!("abc".parse::<CurrentVersion>().is_err());
        assert!("".parse::<CurrentVersion>().is_err());
        assert_eq!(
            CurrentVersion::NoStream.as_expected(),
            ExpectedVersion::NoStream
        );
    }

    #[test]
    fn epoch_next() {
        assert_eq!(Epoch::INITIAL.next(), Some(Epoch::new(1)));
        assert_eq!(Epoch::new(u64::MAX).next(), None);
        assert_eq!(serde_json::to_string(&Epoch::new(3)).unwrap(), "3");
    }
}
