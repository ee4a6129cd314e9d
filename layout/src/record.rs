//! Log records (log format v2) and their framing in a chunk's data area.
//!
//! Every record is framed as `i32 length | record | i32 length` (`TFChunk.cs` `TryAppend`). A record
//! starts with `u8 type | u8 version | i64 logPosition` (`LogRecords/LogRecord.cs`). Types 0
//! prepare, 1 commit and 2 system are log v2 (`KurrentDB.LogCommon/LogRecordType.cs`); 3–11 belong
//! to the experimental log v3 and are walked over but not decoded. Field order of each type follows
//! `PrepareLogRecord.cs`, `CommitLogRecord.cs` and `SystemLogRecord.cs` (`WriteTo` and the reading
//! constructor).

use uuid::Uuid;

use crate::error::DecodeError;

pub const RECORD_PREPARE: u8 = 0;
pub const RECORD_COMMIT: u8 = 1;
pub const RECORD_SYSTEM: u8 = 2;
/// `type | version | logPosition`.
pub const RECORD_BASE_SIZE: usize = 10;
/// Length prefix plus suffix around every record.
pub const FRAME_OVERHEAD: usize = 8;
/// `TFConsts.MaxLogRecordSize`: no record body is larger, so a reader never buffers more.
pub const MAX_RECORD_SIZE: usize = 16 * 1024 * 1024;

/// .NET ticks (100 ns since 0001-01-01 UTC) at the Unix epoch.
pub const TICKS_AT_UNIX_EPOCH: i64 = 621_355_968_000_000_000;

/// Prepare flags (`PrepareFlags` in `PrepareLogRecord.cs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PrepareFlags(pub u16);

impl PrepareFlags {
    pub const NONE: Self = Self(0);
    /// Carries an event and takes an event number in its stream.
    pub const DATA: Self = Self(0x01);
    pub const TRANSACTION_BEGIN: Self = Self(0x02);
    pub const TRANSACTION_END: Self = Self(0x04);
    /// A tombstone: the stream is hard-deleted.
    pub const STREAM_DELETE: Self = Self(0x08);
    /// Committed by itself; no commit record follows. Every normal append writes these.
    pub const IS_COMMITTED: Self = Self(0x20);
    pub const IS_JSON: Self = Self(0x100);
    pub const IS_REDACTED: Self = Self(0x200);
    pub const IS_PROPERTY_METADATA: Self = Self(0x400);
    /// `Data | TransactionBegin | TransactionEnd`.
    pub const SINGLE_WRITE: Self = Self(0x07);

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for PrepareFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// An event, or a transaction marker, as the writer stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareRecord {
    /// 1 for every current server; 0 for logs written before 64-bit expected versions.
    pub version: u8,
    pub log_position: i64,
    pub flags: PrepareFlags,
    /// Position of the transaction's first prepare; equal to `log_position` for normal appends.
    pub transaction_position: i64,
    /// Index of this prepare within its transaction; -1 for begin/end markers.
    pub transaction_offset: i32,
    /// For committed prepares the event number minus one; -2 (any) for uncommitted ones.
    pub expected_version: i64,
    pub stream: String,
    pub event_id: Uuid,
    pub correlation_id: Uuid,
    /// UTC .NET ticks.
    pub timestamp_ticks: i64,
    pub event_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

/// Commits an explicit (TCP) transaction, or any write in logs from before August 2013.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    /// 1 now; 0 stored the first event number as an i32.
    pub version: u8,
    pub log_position: i64,
    pub transaction_position: i64,
    pub first_event_number: i64,
    pub sort_key: i64,
    pub correlation_id: Uuid,
    pub timestamp_ticks: i64,
}

/// `SystemRecordType.Epoch`.
pub const SYSTEM_RECORD_EPOCH: u8 = 1;
/// `SystemRecordSerialization.Json`, the only form the server reads back.
pub const SYSTEM_SERIALIZATION_JSON: u8 = 2;

/// A system record; in practice always an epoch, whose data is the JSON of `EpochRecordDto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemRecord {
    pub log_position: i64,
    pub timestamp_ticks: i64,
    pub system_record_type: u8,
    pub serialization: u8,
    pub reserved: i64,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    Prepare(PrepareRecord),
    Commit(CommitRecord),
    System(SystemRecord),
}

impl LogRecord {
    pub fn log_position(&self) -> i64 {
        match self {
            LogRecord::Prepare(p) => p.log_position,
            LogRecord::Commit(c) => c.log_position,
            LogRecord::System(s) => s.log_position,
        }
    }

    pub fn record_type(&self) -> u8 {
        match self {
            LogRecord::Prepare(_) => RECORD_PREPARE,
            LogRecord::Commit(_) => RECORD_COMMIT,
            LogRecord::System(_) => RECORD_SYSTEM,
        }
    }

    /// The record body, without the length frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(128);
        match self {
            LogRecord::Prepare(p) => {
                base(&mut w, RECORD_PREPARE, p.version, p.log_position);
                w.extend_from_slice(&p.flags.0.to_le_bytes());
                w.extend_from_slice(&p.transaction_position.to_le_bytes());
                w.extend_from_slice(&p.transaction_offset.to_le_bytes());
                if p.version == 0 {
                    let ev = if p.expected_version == i64::MAX - 1 {
                        i32::MAX - 1
                    } else {
                        p.expected_version as i32
                    };
                    w.extend_from_slice(&ev.to_le_bytes());
                } else {
                    w.extend_from_slice(&p.expected_version.to_le_bytes());
                }
                string(&mut w, &p.stream);
                w.extend_from_slice(&p.event_id.to_bytes_le());
                w.extend_from_slice(&p.correlation_id.to_bytes_le());
                w.extend_from_slice(&p.timestamp_ticks.to_le_bytes());
                string(&mut w, &p.event_type);
                blob(&mut w, &p.data);
                blob(&mut w, &p.metadata);
            }
            LogRecord::Commit(c) => {
                base(&mut w, RECORD_COMMIT, c.version, c.log_position);
                w.extend_from_slice(&c.transaction_position.to_le_bytes());
                if c.version == 0 {
                    let n = if c.first_event_number == i64::MAX {
                        i32::MAX
                    } else {
                        c.first_event_number as i32
                    };
                    w.extend_from_slice(&n.to_le_bytes());
                } else {
                    w.extend_from_slice(&c.first_event_number.to_le_bytes());
                }
                w.extend_from_slice(&c.sort_key.to_le_bytes());
                w.extend_from_slice(&c.correlation_id.to_bytes_le());
                w.extend_from_slice(&c.timestamp_ticks.to_le_bytes());
            }
            LogRecord::System(s) => {
                base(&mut w, RECORD_SYSTEM, 0, s.log_position);
                w.extend_from_slice(&s.timestamp_ticks.to_le_bytes());
                w.push(s.system_record_type);
                w.push(s.serialization);
                w.extend_from_slice(&s.reserved.to_le_bytes());
                blob(&mut w, &s.data);
            }
        }
        w
    }

    /// The record with its length prefix and suffix, as it lies in a chunk.
    pub fn encode_framed(&self) -> Vec<u8> {
        frame(&self.encode())
    }

    /// Decodes a record body (without the frame).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let head = RecordHeader::decode(body)?;
        let mut r = Reader {
            b: body,
            at: RECORD_BASE_SIZE,
        };
        match head.record_type {
            RECORD_PREPARE => {
                if head.version > 1 {
                    return Err(DecodeError::new(format!(
                        "prepare record version {} (known: 0, 1)",
                        head.version
                    )));
                }
                let flags = PrepareFlags(r.u16()?);
                let transaction_position = r.i64()?;
                let transaction_offset = r.i32()?;
                let expected_version = if head.version == 0 {
                    match r.i32()? {
                        v if v == i32::MAX - 1 => i64::MAX - 1,
                        v => v as i64,
                    }
                } else {
                    r.i64()?
                };
                let stream = r.string("stream")?;
                let event_id = r.guid()?;
                let correlation_id = r.guid()?;
                let timestamp_ticks = r.i64()?;
                let event_type = r.string("event type")?;
                let data = r.blob("data")?;
                let metadata = r.blob("metadata")?;
                Ok(LogRecord::Prepare(PrepareRecord {
                    version: head.version,
                    log_position: head.log_position,
                    flags,
                    transaction_position,
                    transaction_offset,
                    expected_version,
                    stream,
                    event_id,
                    correlation_id,
                    timestamp_ticks,
                    event_type,
                    data,
                    metadata,
                }))
            }
            RECORD_COMMIT => {
                if head.version > 1 {
                    return Err(DecodeError::new(format!(
                        "commit record version {} (known: 0, 1)",
                        head.version
                    )));
                }
                let transaction_position = r.i64()?;
                let first_event_number = if head.version == 0 {
                    match r.i32()? {
                        i32::MAX => i64::MAX,
                        v => v as i64,
                    }
                } else {
                    r.i64()?
                };
                Ok(LogRecord::Commit(CommitRecord {
                    version: head.version,
                    log_position: head.log_position,
                    transaction_position,
                    first_event_number,
                    sort_key: r.i64()?,
                    correlation_id: r.guid()?,
                    timestamp_ticks: r.i64()?,
                }))
            }
            RECORD_SYSTEM => {
                if head.version != 0 {
                    return Err(DecodeError::new(format!(
                        "system record version {} (known: 0)",
                        head.version
                    )));
                }
                let timestamp_ticks = r.i64()?;
                let system_record_type = r.u8()?;
                let serialization = r.u8()?;
                if system_record_type == 0 || serialization == 0 {
                    return Err(DecodeError::new(
                        "system record with an invalid type or serialization",
                    ));
                }
                Ok(LogRecord::System(SystemRecord {
                    log_position: head.log_position,
                    timestamp_ticks,
                    system_record_type,
                    serialization,
                    reserved: r.i64()?,
                    data: r.blob("data")?,
                }))
            }
            t => Err(DecodeError::new(format!(
                "record type {t} is not a log v2 record (3–11 are log v3)"
            ))),
        }
    }
}

/// The common start of every record: enough to step over types this crate does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub record_type: u8,
    pub version: u8,
    pub log_position: i64,
}

impl RecordHeader {
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        if body.len() < RECORD_BASE_SIZE {
            return Err(DecodeError::new(format!(
                "record of {} bytes is shorter than its {RECORD_BASE_SIZE}-byte header",
                body.len()
            )));
        }
        Ok(RecordHeader {
            record_type: body[0],
            version: body[1],
            log_position: i64::from_le_bytes(body[2..10].try_into().expect("8 bytes")),
        })
    }
}

/// Wraps a record body in its length prefix and suffix.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let len = (body.len() as i32).to_le_bytes();
    let mut w = Vec::with_capacity(body.len() + FRAME_OVERHEAD);
    w.extend_from_slice(&len);
    w.extend_from_slice(body);
    w.extend_from_slice(&len);
    w
}

/// Converts Unix time in nanoseconds to the .NET ticks records carry.
pub fn ticks_from_unix_nanos(nanos: i128) -> i64 {
    (nanos / 100) as i64 + TICKS_AT_UNIX_EPOCH
}

fn base(w: &mut Vec<u8>, t: u8, version: u8, log_position: i64) {
    w.push(t);
    w.push(version);
    w.extend_from_slice(&log_position.to_le_bytes());
}

/// UTF-8 with a ULEB128 byte-length prefix (.NET `BinaryWriter` 7-bit encoded int).
fn string(w: &mut Vec<u8>, s: &str) {
    let mut n = s.len() as u32;
    loop {
        let b = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            w.push(b);
            break;
        }
        w.push(b | 0x80);
    }
    w.extend_from_slice(s.as_bytes());
}

fn blob(w: &mut Vec<u8>, b: &[u8]) {
    w.extend_from_slice(&(b.len() as i32).to_le_bytes());
    w.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                DecodeError::new(format!(
                    "record ends after {} bytes, {} more needed at offset {}",
                    self.b.len(),
                    n,
                    self.at
                ))
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn guid(&mut self) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes_le(self.take(16)?.try_into().expect("16")))
    }
    fn uleb128(&mut self) -> Result<u32, DecodeError> {
        let mut n: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.u8()?;
            n |= ((b & 0x7F) as u32)
                .checked_shl(shift)
                .ok_or_else(|| DecodeError::new("string length overflows"))?;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(DecodeError::new("string length is longer than 5 bytes"))
    }
    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let n = self.uleb128()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| DecodeError::new(format!("{what} is not valid UTF-8")))
    }
    fn blob(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        let n = self.i32()?;
        if n < 0 {
            return Err(DecodeError::new(format!("{what} length {n} is negative")));
        }
        Ok(self.take(n as usize)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(s: &str) -> Uuid {
        s.parse().unwrap()
    }

    /// A self-committed event as a current server writes it, derived by hand from
    /// `PrepareLogRecord.WriteTo` (v1) and `TFChunk.TryAppend` (frame).
    #[test]
    fn golden_prepare_v1() {
        let rec = LogRecord::Prepare(PrepareRecord {
            version: 1,
            log_position: 0x100,
            flags: PrepareFlags::SINGLE_WRITE | PrepareFlags::IS_COMMITTED | PrepareFlags::IS_JSON,
            transaction_position: 0x100,
            transaction_offset: 0,
            expected_version: -1,
            stream: "s-1".into(),
            event_id: id("00112233-4455-6677-8899-aabbccddeeff"),
            correlation_id: id("ffeeddcc-bbaa-9988-7766-554433221100"),
            timestamp_ticks: 0x08DC_0000_0000_0000,
            event_type: "T".into(),
            data: b"{}".to_vec(),
            metadata: vec![],
        });
        #[rustfmt::skip]
        let body: Vec<u8> = [
            &[0x00, 0x01][..],                                 // prepare, version 1
            &[0x00, 0x01, 0, 0, 0, 0, 0, 0],                   // log position 0x100
            &[0x27, 0x01],                                     // flags 0x127
            &[0x00, 0x01, 0, 0, 0, 0, 0, 0],                   // transaction position
            &[0, 0, 0, 0],                                     // transaction offset
            &[0xFF; 8],                                        // expected version -1
            &[0x03, b's', b'-', b'1'],                         // ULEB128 3 + stream
            &[0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66,  // event id, .NET Guid order
              0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
            &[0xcc, 0xdd, 0xee, 0xff, 0xaa, 0xbb, 0x88, 0x99,  // correlation id
              0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00],
            &[0, 0, 0, 0, 0, 0, 0xDC, 0x08],                   // ticks
            &[0x01, b'T'],                                     // event type
            &[0x02, 0, 0, 0, b'{', b'}'],                      // data
            &[0, 0, 0, 0],                                     // metadata
        ].concat();
        assert_eq!(body.len(), 88);
        assert_eq!(rec.encode(), body);
        let framed = rec.encode_framed();
        assert_eq!(&framed[..4], &[88, 0, 0, 0]);
        assert_eq!(&framed[framed.len() - 4..], &[88, 0, 0, 0]);
        assert_eq!(LogRecord::decode(&body).unwrap(), rec);
    }

    /// ULEB128 lengths of 127 and 128 bytes (`ComputeSizeOnDisk`: `n + log2(n)/7 + 1`).
    #[test]
    fn stream_name_lengths_use_uleb128() {
        let mut w = Vec::new();
        string(&mut w, &"a".repeat(127));
        assert_eq!(w[0], 0x7F);
        assert_eq!(w.len(), 128);
        let mut w = Vec::new();
        string(&mut w, &"a".repeat(128));
        assert_eq!(&w[..2], &[0x80, 0x01]);
        assert_eq!(w.len(), 130);
    }

    /// A v0 prepare stores the expected version as an i32; int.MaxValue-1 stands for long.MaxValue-1.
    #[test]
    fn prepare_v0_maps_the_max_expected_version() {
        let mut p = PrepareRecord {
            version: 0,
            log_position: 0,
            flags: PrepareFlags::DATA,
            transaction_position: 0,
            transaction_offset: 0,
            expected_version: i64::MAX - 1,
            stream: "a".into(),
            event_id: Uuid::from_u128(1),
            correlation_id: Uuid::from_u128(2),
            timestamp_ticks: 0,
            event_type: String::new(),
            data: vec![],
            metadata: vec![],
        };
        let b = LogRecord::Prepare(p.clone()).encode();
        assert_eq!(&b[24..28], &(i32::MAX - 1).to_le_bytes());
        assert_eq!(
            LogRecord::decode(&b).unwrap(),
            LogRecord::Prepare(p.clone())
        );
        p.expected_version = 5;
        let b = LogRecord::Prepare(p.clone()).encode();
        assert_eq!(b.len(), 10 + 2 + 8 + 4 + 4 + 2 + 16 + 16 + 8 + 1 + 4 + 4);
        assert_eq!(LogRecord::decode(&b).unwrap(), LogRecord::Prepare(p));
    }

    /// `CommitLogRecord.WriteTo` v1: 10 + 8 + 8 + 8 + 16 + 8 = 58 bytes.
    #[test]
    fn golden_commit_v1() {
        let c = LogRecord::Commit(CommitRecord {
            version: 1,
            log_position: 500,
            transaction_position: 300,
            first_event_number: 7,
            sort_key: 500,
            correlation_id: Uuid::nil(),
            timestamp_ticks: 1,
        });
        let b = c.encode();
        assert_eq!(b.len(), 58);
        assert_eq!(&b[..2], &[1, 1]);
        assert_eq!(&b[10..18], &300i64.to_le_bytes());
        assert_eq!(&b[18..26], &7i64.to_le_bytes());
        assert_eq!(&b[26..34], &500i64.to_le_bytes());
        assert_eq!(LogRecord::decode(&b).unwrap(), c);
    }

    /// `SystemLogRecord.WriteTo`: 10 + 8 + 1 + 1 + 8 + 4 + data.
    #[test]
    fn golden_epoch_system_record() {
        let s = LogRecord::System(SystemRecord {
            log_position: 0,
            timestamp_ticks: 2,
            system_record_type: SYSTEM_RECORD_EPOCH,
            serialization: SYSTEM_SERIALIZATION_JSON,
            reserved: 0,
            data: b"{}".to_vec(),
        });
        let b = s.encode();
        assert_eq!(
            b,
            [
                &[2u8, 0][..],
                &[0; 8],
                &[2, 0, 0, 0, 0, 0, 0, 0],
                &[1, 2],
                &[0; 8],
                &[2, 0, 0, 0, b'{', b'}']
            ]
            .concat()
        );
        assert_eq!(LogRecord::decode(&b).unwrap(), s);
    }

    #[test]
    fn unknown_types_and_truncation_are_errors_not_panics() {
        let mut b = vec![3u8, 0];
        b.extend_from_slice(&0i64.to_le_bytes());
        assert!(LogRecord::decode(&b).is_err());
        assert_eq!(RecordHeader::decode(&b).unwrap().record_type, 3);
        assert!(LogRecord::decode(&b[..5]).is_err());
    }

    #[test]
    fn ticks_of_the_unix_epoch() {
        assert_eq!(ticks_from_unix_nanos(0), TICKS_AT_UNIX_EPOCH);
        assert_eq!(ticks_from_unix_nanos(1_000), TICKS_AT_UNIX_EPOCH + 10);
    }

    pub(crate) fn arb_record() -> impl Strategy<Value = LogRecord> {
        let prepare = (
            0u8..2,
            0i64..1 << 40,
            any::<u16>(),
            -2i64..1000,
            "[a-z$-]{1,20}",
            any::<u128>(),
            "[A-Za-z]{0,10}",
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(v, pos, flags, ev, stream, id, ty, data, meta)| {
                LogRecord::Prepare(PrepareRecord {
                    version: v,
                    log_position: pos,
                    flags: PrepareFlags(flags),
                    transaction_position: pos,
                    transaction_offset: 0,
                    expected_version: ev,
                    stream,
                    event_id: Uuid::from_u128(id),
                    correlation_id: Uuid::from_u128(id.wrapping_add(1)),
                    timestamp_ticks: pos,
                    event_type: ty,
                    data,
                    metadata: meta,
                })
            });
        let commit = (0u8..2, 0i64..1 << 40, 0i64..1000).prop_map(|(v, pos, n)| {
            LogRecord::Commit(CommitRecord {
                version: v,
                log_position: pos,
                transaction_position: pos / 2,
                first_event_number: n,
                sort_key: pos,
                correlation_id: Uuid::from_u128(pos as u128),
                timestamp_ticks: 3,
            })
        });
        let system = (0i64..1 << 40, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
            |(pos, data)| {
                LogRecord::System(SystemRecord {
                    log_position: pos,
                    timestamp_ticks: 4,
                    system_record_type: SYSTEM_RECORD_EPOCH,
                    serialization: SYSTEM_SERIALIZATION_JSON,
                    reserved: 0,
                    data,
                })
            },
        );
        prop_oneof![prepare, commit, system]
    }

    proptest! {
        #[test]
        fn round_trips(rec in arb_record()) {
            prop_assert_eq!(LogRecord::decode(&rec.encode()).unwrap(), rec);
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = LogRecord::decode(&b);
        }
    }
}
