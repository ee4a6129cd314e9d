//! The writer's schedule: which operations go to the secondary when, and how far the secondary
//! holds everything (the low-water mark the checkpoint may cover).
//!
//! Planned pages are admitted in `$all` order. Each operation joins the queue of its *lane*: its
//! stream with `ordering = "stream"`, one lane for everything with `ordering = "global"`. A lane
//! runs one piece of [`Work`] at a time, so its operations reach the secondary in order; different
//! lanes run concurrently. Work takes the operations queued in its lane up to one append
//! request's worth, merging a stream's consecutive runs, even from different pages, into one
//! append.
//!
//! While catching up, a lane *lingers*: it is not sent until it holds a full request, or until
//! half a window more records were admitted after the page of its oldest operation. Per-request
//! costs dominate appends of a few events, so a stream whose runs are spread over `$all` is sent
//! in a few large requests rather than many small ones, and the writer leaves the CPU to the
//! reader. Once a page from the head of `$all` is admitted (live), when the writer drains, or when
//! no page came for a while (the writer's `LINGER_TIME`), nothing lingers: [`Lanes::admit`] with
//! `eager`, [`Lanes::release_all`].
//!
//! A page is *retired* when every one of its operations is done and every earlier page is retired;
//! its end is then the low-water mark. Pages are admitted only while fewer than a window of
//! records ([`STREAM_MAX_RECORDS`], [`GLOBAL_MAX_RECORDS`]) and [`MAX_BYTES`] of event data are
//! admitted and not retired (a lone page always is): that bounds memory, and bounds reordering to
//! events of different streams fewer than `STREAM_MAX_RECORDS + page_size` records apart.
//!
//! Everything here is synchronous and does no I/O, so the invariants are tested directly (see the
//! tests at the end): per-lane order, a low-water mark never ahead of completed work, the bounds.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::plan::Op;
use crate::config::Ordering;
use crate::position::Position;

/// With `ordering = "stream"`, records admitted and not yet retired beyond which no further page
/// is admitted: room for many streams' runs to merge and for 128 of them in flight.
pub const STREAM_MAX_RECORDS: usize = 65_536;
/// With `ordering = "global"`, the same bound. One request is in flight at a time, so reading
/// ahead a few thousand records keeps it busy; a larger window would only hold memory.
pub const GLOBAL_MAX_RECORDS: usize = 8_192;
/// Event bytes (data and metadata) admitted and not yet retired beyond which no further page is
/// admitted. This bounds the writer's admitted pages only (plus the one page that crosses it);
/// the pages in the channel, being planned, read ahead or waiting as a barrier are bounded in
/// number, not bytes: `docs/replication.md` ("Memory") gives the whole formula.
pub const MAX_BYTES: usize = 32 << 20;
/// A lane's work grows by whole queued operations until it holds one append request's worth:
/// this many events…
pub const WORK_EVENTS: usize = super::writer::MAX_APPEND_EVENTS;
/// …or this many bytes of data and metadata.
pub const WORK_BYTES: usize = super::writer::MAX_APPEND_BYTES;

/// The admission order of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageSeq(u64);

/// What the pipeline reports about a page once it is retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInfo {
    /// The page's resume position.
    pub end: Position,
    /// Source records in the page, replicated or not.
    pub records: usize,
    /// Timestamp of the page's last record, as the server formats it.
    pub updated: Option<String>,
}

/// A lane's operations taken together: applied in order, by one task.
#[derive(Debug)]
pub struct Work {
    /// Operations in queue order; consecutive appends of one stream already merged.
    pub ops: Vec<Op>,
    lane: Option<String>,
    /// One page per operation admitted (before merging): the pages this work completes.
    credits: Vec<PageSeq>,
}

impl Work {
    /// Events appended by this work.
    pub fn events(&self) -> usize {
        self.ops.iter().map(op_events).sum()
    }
}

struct Page {
    seq: PageSeq,
    info: PageInfo,
    /// Operations not yet done.
    pending: usize,
    bytes: usize,
    /// Records admitted before this page, over the whole run.
    admitted_before: u64,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<(PageSeq, Op)>,
    events: usize,
    bytes: usize,
    /// A work of this lane is running.
    busy: bool,
    /// Listed in `ready`.
    ready: bool,
}

impl Lane {
    fn full(&self) -> bool {
        self.events >= WORK_EVENTS || self.bytes >= WORK_BYTES
    }
}

/// The schedule (see the module documentation).
pub struct Lanes {
    ordering: Ordering,
    /// The window: [`STREAM_MAX_RECORDS`] or [`GLOBAL_MAX_RECORDS`].
    max_records: usize,
    /// While catching up, how many records may be admitted after an operation's page before its
    /// lane is sent without a full request: half the window, so a full window always has work.
    linger_records: usize,
    pages: VecDeque<Page>,
    next_seq: u64,
    lanes: HashMap<String, Lane>,
    /// Lanes to send now, in the order they became so.
    ready: VecDeque<String>,
    /// Lingering lanes (queued operations, not busy, not ready), by the page of their oldest
    /// operation.
    lingering: BTreeSet<(PageSeq, String)>,
    /// Nothing lingers until the next admission that is not eager.
    eager: bool,
    /// Records admitted over the whole run.
    admitted: u64,
    records: usize,
    bytes: usize,
}

fn op_events(op: &Op) -> usize {
    match op {
        Op::Append { events, .. } => events.len(),
        _ => 0,
    }
}

fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Append { events, .. } => events
            .iter()
            .map(|e| e.event.data.len() + e.event.metadata.len())
            .sum(),
        Op::Metadata { data, .. } => data.len(),
        Op::HardDelete { .. } => 0,
    }
}

/// Appends `op` to `ops`, merged into the last operation when both are appends to one stream and
/// `op` continues it without a gap.
fn push_merged(ops: &mut Vec<Op>, op: Op) {
    if let (
        Some(Op::Append {
            stream: last_stream,
            events: last,
        }),
        Op::Append { stream, events },
    ) = (ops.last_mut(), &op)
    {
        let continues = last_stream == stream
            && last.last().and_then(|e| e.revision.next()) == events.first().map(|e| e.revision);
        if continues {
            if let Op::Append { events, .. } = op {
                last.extend(events);
            }
            return;
        }
    }
    ops.push(op);
}

impl Lanes {
    pub fn new(ordering: Ordering) -> Lanes {
        let max_records = match ordering {
            Ordering::Stream => STREAM_MAX_RECORDS,
            Ordering::Global => GLOBAL_MAX_RECORDS,
        };
        Lanes {
            ordering,
            max_records,
            linger_records: max_records / 2,
            pages: VecDeque::new(),
            next_seq: 0,
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            lingering: BTreeSet::new(),
            eager: false,
            admitted: 0,
            records: 0,
            bytes: 0,
        }
    }

    /// Whether another page may be admitted now.
    pub fn has_room(&self) -> bool {
        self.pages.is_empty() || (self.records < self.max_records && self.bytes < MAX_BYTES)
    }

    /// Whether every admitted page is retired.
    pub fn is_idle(&self) -> bool {
        self.pages.is_empty()
    }

    /// Admits a page's operations, in `$all` order; `records` counts the page's source records.
    /// `eager`: the page comes from the head of `$all`, so nothing should linger. Returns the
    /// pages retired at once (this one, if it has no operations and every earlier page is
    /// retired).
    pub fn admit(&mut self, ops: Vec<Op>, info: PageInfo, eager: bool) -> Vec<PageInfo> {
        let seq = PageSeq(self.next_seq);
        self.next_seq += 1;
        let mut bytes = 0;
        let pending = ops.len();
        for op in ops {
            let (op_events, op_bytes) = (op_events(&op), op_bytes(&op));
            bytes += op_bytes;
            let key = match self.ordering {
                Ordering::Stream => op.stream(),
                Ordering::Global => "",
            };
            let lane = match self.lanes.get_mut(key) {
                Some(lane) => lane,
                None => self.lanes.entry(key.to_owned()).or_default(),
            };
            let was_empty = lane.queue.is_empty();
            let front = lane.queue.front().map(|(front, _)| *front);
            lane.events += op_events;
            lane.bytes += op_bytes;
            let idle = !lane.busy && !lane.ready;
            let full = lane.full();
            if idle && full {
                lane.ready = true;
            }
            let key = (idle && (full || was_empty)).then(|| key.to_owned());
            lane.queue.push_back((seq, op));
            let Some(key) = key else { continue };
            if full {
                if let Some(front) = front {
                    self.lingering.remove(&(front, key.clone()));
                }
                self.ready.push_back(key);
            } else {
                self.lingering.insert((seq, key));
            }
        }
        let records = info.records;
        self.pages.push_back(Page {
            seq,
            info,
            pending,
            bytes,
            admitted_before: self.admitted,
        });
        self.admitted += records as u64;
        self.records += records;
        self.bytes += bytes;
        self.eager = eager;
        self.release_due();
        self.retire()
    }

    /// Sends every lingering lane, and lets nothing linger until the next admission.
    pub fn release_all(&mut self) {
        self.eager = true;
        self.release_due();
    }

    /// Moves lingering lanes that are due to `ready`.
    fn release_due(&mut self) {
        while let Some((seq, _)) = self.lingering.first() {
            if !self.eager && !self.is_due(*seq) {
                break;
            }
            let (_, key) = self.lingering.pop_first().expect("checked");
            let lane = self.lanes.get_mut(&key).expect("a lingering lane exists");
            lane.ready = true;
            self.ready.push_back(key);
        }
    }

    /// Whether an operation of page `seq` has lingered long enough.
    fn is_due(&self, seq: PageSeq) -> bool {
        let page = &self.pages[self.index(seq)];
        self.admitted - page.admitted_before >= self.linger_records as u64
    }

    fn index(&self, seq: PageSeq) -> usize {
        let first = self.pages.front().map_or(0, |p| p.seq.0);
        usize::try_from(seq.0 - first).expect("admitted pages fit in memory")
    }

    /// The next lane's work, if a lane is ready: its queued operations from the front, merged,
    /// up to [`WORK_EVENTS`] events or [`WORK_BYTES`] (at least one operation).
    pub fn next_work(&mut self) -> Option<Work> {
        let key = self.ready.pop_front()?;
        let lane = self
            .lanes
            .get_mut(&key)
            .expect("a ready lane exists until its work is done");
        let mut work = Work {
            ops: Vec::new(),
            lane: None,
            credits: Vec::new(),
        };
        let (mut events, mut bytes) = (0, 0);
        while let Some((seq, op)) = lane.queue.pop_front() {
            events += op_events(&op);
            bytes += op_bytes(&op);
            work.credits.push(seq);
            push_merged(&mut work.ops, op);
            if events >= WORK_EVENTS || bytes >= WORK_BYTES {
                break;
            }
        }
        lane.events -= events;
        lane.bytes -= bytes;
        lane.ready = false;
        lane.busy = true;
        work.lane = Some(key);
        Some(work)
    }

    /// Records that `work` was applied in full. Returns the pages retired by it, oldest first.
    pub fn complete(&mut self, work: Work) -> Vec<PageInfo> {
        let key = work.lane.expect("work comes from next_work");
        for seq in work.credits {
            let index = self.index(seq);
            self.pages[index].pending -= 1;
        }
        let lane = self
            .lanes
            .get_mut(&key)
            .expect("a busy lane exists until its work is done");
        lane.busy = false;
        match lane.queue.front() {
            None => {
                self.lanes.remove(&key);
            }
            Some(&(front, _)) => {
                if self.eager || lane.full() || self.is_due(front) {
                    let lane = self.lanes.get_mut(&key).expect("present");
                    lane.ready = true;
                    self.ready.push_back(key);
                } else {
                    self.lingering.insert((front, key));
                }
            }
        }
        self.retire()
    }

    fn retire(&mut self) -> Vec<PageInfo> {
        let mut retired = Vec::new();
        while self.pages.front().is_some_and(|p| p.pending == 0) {
            let page = self.pages.pop_front().expect("checked");
            self.bytes -= page.bytes;
            self.records -= page.info.records;
            retired.push(page.info);
        }
        retired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esdb::EventData;
    use crate::pipeline::plan::SourceEvent;
    use crate::position::StreamRevision;
    use proptest::prelude::*;

    fn append(stream: &str, revisions: std::ops::Range<u64>) -> Op {
        Op::Append {
            stream: stream.into(),
            events: revisions
                .map(|n| SourceEvent {
                    revision: StreamRevision::new(n).unwrap(),
                    event: EventData::json(uuid::Uuid::new_v4(), "E", &b"{}"[..]),
                })
                .collect(),
        }
    }

    /// Page `n` of `records` records.
    fn page(n: u64, records: usize) -> PageInfo {
        PageInfo {
            end: Position::new(n, n).unwrap(),
            records,
            updated: None,
        }
    }

    fn info(n: u64) -> PageInfo {
        page(n, 1)
    }

    fn revisions(op: &Op) -> Vec<u64> {
        match op {
            Op::Append { events, .. } => events.iter().map(|e| e.revision.get()).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn a_streams_runs_from_several_pages_merge_and_anything_else_stays_apart() {
        let mut lanes = Lanes::new(Ordering::Stream);
        lanes.admit(vec![append("s", 0..2), append("t", 0..1)], info(1), false);
        lanes.admit(
            vec![
                append("s", 2..5),
                append("s", 7..8),
                Op::Metadata {
                    stream: "s".into(),
                    revision: StreamRevision::START,
                    event_id: uuid::Uuid::new_v4(),
                    data: bytes::Bytes::from_static(crate::pipeline::plan::SOFT_DELETE_BODY),
                },
                append("s", 8..9),
            ],
            info(2),
            true,
        );
        let s = lanes.next_work().unwrap();
        assert_eq!(s.ops.len(), 4);
        assert_eq!(revisions(&s.ops[0]), vec![0, 1, 2, 3, 4]);
        assert_eq!(revisions(&s.ops[1]), vec![7], "a gap is not merged");
        assert!(matches!(s.ops[2], Op::Metadata { .. }));
        assert_eq!(
            revisions(&s.ops[3]),
            vec![8],
            "nothing merges across a metadata record"
        );
        let t = lanes.next_work().unwrap();
        assert_eq!(t.ops.len(), 1);
        assert!(
            lanes.next_work().is_none(),
            "each lane runs one work at a time"
        );
        assert_eq!(lanes.complete(s), vec![], "page 1 still waits for t");
        assert_eq!(lanes.complete(t), vec![info(1), info(2)]);
        assert!(lanes.is_idle());
    }

    #[test]
    fn global_ordering_is_one_lane_in_all_order() {
        let mut lanes = Lanes::new(Ordering::Global);
        lanes.admit(vec![append("s", 0..1), append("t", 0..1)], info(1), false);
        lanes.admit(vec![append("s", 1..2)], info(2), true);
        let work = lanes.next_work().unwrap();
        let streams: Vec<&str> = work.ops.iter().map(Op::stream).collect();
        assert_eq!(streams, ["s", "t", "s"]);
        assert!(lanes.next_work().is_none());
        assert_eq!(lanes.complete(work), vec![info(1), info(2)]);
    }

    #[test]
    fn while_catching_up_a_lane_lingers_until_enough_records_follow_its_page() {
        let mut lanes = Lanes::new(Ordering::Stream);
        lanes.admit(vec![append("s", 0..10)], page(1, 10), false);
        lanes.admit(
            vec![append("t", 0..10)],
            page(2, STREAM_MAX_RECORDS / 2 - 11),
            false,
        );
        assert!(lanes.next_work().is_none(), "s lingers");
        lanes.admit(vec![append("s", 10..20)], page(3, 1), false);
        let s = lanes
            .next_work()
            .expect("STREAM_MAX_RECORDS / 2 admitted after page 1");
        assert_eq!(revisions(&s.ops[0]), (0..20).collect::<Vec<_>>());
        assert!(lanes.next_work().is_none(), "t still lingers");
        assert_eq!(lanes.complete(s), vec![page(1, 10)]);
        lanes.release_all();
        let t = lanes.next_work().expect("released");
        assert_eq!(
            lanes.complete(t),
            vec![page(2, STREAM_MAX_RECORDS / 2 - 11), page(3, 1)]
        );
    }

    #[test]
    fn a_full_request_and_the_head_of_all_do_not_linger() {
        let mut lanes = Lanes::new(Ordering::Stream);
        lanes.admit(vec![append("s", 0..WORK_EVENTS as u64)], info(1), false);
        assert_eq!(lanes.next_work().unwrap().events(), WORK_EVENTS);
        lanes.admit(vec![append("t", 0..1)], info(2), false);
        assert!(lanes.next_work().is_none());
        lanes.admit(vec![append("u", 0..1)], info(3), true);
        assert_eq!(lanes.next_work().unwrap().ops[0].stream(), "t");
        assert_eq!(lanes.next_work().unwrap().ops[0].stream(), "u");
    }

    #[test]
    fn an_empty_page_retires_once_the_pages_before_it_have() {
        let mut lanes = Lanes::new(Ordering::Stream);
        assert_eq!(lanes.admit(vec![], info(1), true), vec![info(1)]);
        lanes.admit(vec![append("s", 0..1)], info(2), true);
        assert_eq!(lanes.admit(vec![], info(3), true), vec![]);
        let work = lanes.next_work().unwrap();
        assert_eq!(lanes.complete(work), vec![info(2), info(3)]);
    }

    #[test]
    fn admission_stops_at_the_record_and_byte_bounds_and_a_lone_page_is_always_admitted() {
        let mut lanes = Lanes::new(Ordering::Stream);
        lanes.admit(
            vec![append("s", 0..1)],
            page(1, STREAM_MAX_RECORDS - 1),
            false,
        );
        assert!(lanes.has_room());
        lanes.admit(vec![append("s", 1..2)], page(2, 1), false);
        assert!(!lanes.has_room());
        let work = lanes
            .next_work()
            .expect("a full window never leaves everything lingering");
        assert_eq!(lanes.complete(work).len(), 2);
        assert!(lanes.has_room());

        let big = Op::Metadata {
            stream: "s".into(),
            revision: StreamRevision::START,
            event_id: uuid::Uuid::new_v4(),
            data: bytes::Bytes::from(vec![b' '; MAX_BYTES]),
        };
        lanes.admit(vec![big], info(3), false);
        assert!(!lanes.has_room(), "past the byte bound only when alone");
    }

    #[test]
    fn global_ordering_reads_ahead_a_smaller_window_and_never_waits_for_the_timer() {
        let mut lanes = Lanes::new(Ordering::Global);
        let mut admitted = 0;
        let mut revision = 0;
        while lanes.has_room() {
            lanes.admit(
                vec![append("s", revision..revision + 1)],
                page(revision + 1, 128),
                false,
            );
            admitted += 128;
            revision += 1;
        }
        assert_eq!(admitted, GLOBAL_MAX_RECORDS);
        let work = lanes
            .next_work()
            .expect("half a window admitted after the first page releases the lane");
        assert!(
            work.events() < WORK_EVENTS,
            "sent before it held a full request"
        );
    }

    #[test]
    fn work_is_bounded_by_one_request() {
        let mut lanes = Lanes::new(Ordering::Stream);
        for n in 0..3u64 {
            let from = n * WORK_EVENTS as u64 / 2;
            lanes.admit(
                vec![append("s", from..from + WORK_EVENTS as u64 / 2)],
                info(n + 1),
                false,
            );
        }
        let first = lanes.next_work().unwrap();
        assert_eq!(first.events(), WORK_EVENTS);
        assert_eq!(lanes.complete(first), vec![info(1), info(2)]);
        lanes.release_all();
        let second = lanes.next_work().unwrap();
        assert_eq!(second.events(), WORK_EVENTS / 2);
    }

    proptest! {
        /// Any pages, lingering or not, any order of completion: each stream's events are handed
        /// out once, in order; a page retires only when all its operations are done, and pages
        /// retire in order; a full window always has work to send.
        #[test]
        fn per_stream_order_and_a_low_water_mark_that_never_runs_ahead(
            pages in proptest::collection::vec(
                (proptest::collection::vec((0usize..4, 1u64..4), 0..6), 1usize..12_000, any::<bool>()),
                1..12),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..200),
            global in any::<bool>(),
        ) {
            let ordering = if global { Ordering::Global } else { Ordering::Stream };
            let mut lanes = Lanes::new(ordering);
            let mut next = [0u64; 4];
            // Per page: how many events of it are not yet done; a page may retire only at zero.
            let mut outstanding: Vec<usize> = Vec::new();
            let mut page_of: HashMap<(usize, u64), usize> = HashMap::new();
            let mut handed = [0u64; 4];
            let mut retired = Vec::new();
            let mut running: Vec<Work> = Vec::new();
            let mut picks = picks.into_iter();
            let mut queue = pages.into_iter().enumerate().peekable();
            loop {
                if queue.peek().is_some() && lanes.has_room() {
                    let (p, (ops, records, eager)) = queue.next().unwrap();
                    let ops: Vec<Op> = ops.iter().map(|&(s, n)| {
                        let from = next[s];
                        next[s] += n;
                        for r in from..from + n { page_of.insert((s, r), p); }
                        append(&format!("s{s}"), from..from + n)
                    }).collect();
                    outstanding.push(ops.iter().map(op_events).sum());
                    retired.extend(lanes.admit(ops, page(p as u64 + 1, records), eager));
                }
                while let Some(work) = lanes.next_work() {
                    for op in &work.ops {
                        let s: usize = op.stream()[1..].parse().unwrap();
                        for r in revisions(op) {
                            prop_assert_eq!(r, handed[s], "stream {} out of order", s);
                            handed[s] += 1;
                        }
                    }
                    running.push(work);
                }
                if running.is_empty() {
                    if queue.peek().is_some() {
                        prop_assert!(lanes.has_room(), "a full window with nothing to send");
                        continue;
                    }
                    if lanes.is_idle() { break; }
                    // No more pages: the writer drains.
                    lanes.release_all();
                    continue;
                }
                let i = picks.next().map_or(0, |ix| ix.index(running.len()));
                let work = running.swap_remove(i);
                for op in &work.ops {
                    let s: usize = op.stream()[1..].parse().unwrap();
                    for r in revisions(op) { outstanding[page_of[&(s, r)]] -= 1; }
                }
                for page in lanes.complete(work) {
                    let p = (page.end.commit() - 1) as usize;
                    prop_assert_eq!(p, retired.len(), "pages retire in order");
                    prop_assert!(outstanding[..=p].iter().all(|&n| n == 0), "retired ahead of work");
                    retired.push(page);
                }
            }
            prop_assert_eq!(retired.len(), outstanding.len());
            prop_assert!(lanes.is_idle());
            prop_assert_eq!(handed, next);
        }
    }
}
