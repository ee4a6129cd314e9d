"""Checks the dev node's gRPC face with the published Python client (kurrentdbclient).

Usage: python kurrentdbclient_check.py CONNECTION_STRING

Runs single and batch appends, $all and stream reads, a subscription from a position through
catch-up into live events, stream metadata, delete, tombstone and a wrong-expected-version
error, and exits non-zero on the first failure. .ci/run starts the node and calls this.
"""

import sys
import threading
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.events import CaughtUp
from kurrentdbclient.exceptions import (
    FailedPreconditionError,
    NotFoundError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main(uri):
    client = KurrentDBClient(uri=uri)
    run = uuid.uuid4().hex[:8]
    stream = f"py-orders-{run}"

    # Single append (Append RPC), then a batch (BatchAppend RPC), with exact ids and bytes.
    first = NewEvent(type="OrderPlaced", data=b'{"n": 1,  "x" :[ ]}', metadata=b'{"m":1}')
    check(client.append_to_stream(stream, events=first, current_version=StreamState.NO_STREAM) >= 0,
          "single append returns a commit position")
    binary = NewEvent(type="Blob", data=bytes([0, 159, 255, 10]), metadata=bytes([200, 1]),
                      content_type="application/octet-stream")
    batch = [NewEvent(type="OrderLine", data=b'{"line": 1}'), binary,
             NewEvent(type="OrderLine", data=b'{"line": 2}')]
    position = client.append_to_stream(stream, events=batch, current_version=0)
    check(position > 0, "batch append returns a commit position")

    # The same batch again at the same expected version writes nothing (idempotent).
    client.append_to_stream(stream, events=batch, current_version=0)

    events = client.get_stream(stream)
    check([e.id for e in events] == [first.id] + [e.id for e in batch], "stream read: ids in order")
    check([e.stream_position for e in events] == [0, 1, 2, 3], "stream read: revisions")
    check(events[0].data == first.data and events[0].metadata == first.metadata,
          "JSON data and metadata byte for byte")
    check(events[0].content_type == "application/json", "JSON content type")
    check(events[2].data == binary.data and events[2].metadata == binary.metadata,
          "binary data and metadata byte for byte")
    check(events[2].content_type == "application/octet-stream", "binary content type")
    backwards = client.get_stream(stream, backwards=True, limit=2)
    check([e.stream_position for e in backwards] == [3, 2], "backwards stream read")

    # $all: forwards from the first event's position includes it; the default filter keeps
    # system events out; backwards from the end sees the newest event first.
    forwards = list(client.read_all(commit_position=events[0].commit_position, limit=4))
    check([e.id for e in forwards] == [e.id for e in events], "$all forwards from a position")
    newest = list(client.read_all(backwards=True, limit=1))
    check(newest[0].id == events[-1].id, "$all backwards from the end")
    check(client.get_commit_position() == events[-1].commit_position, "commit position")

    # Wrong expected version.
    try:
        client.append_to_stream(stream, events=NewEvent(type="Late", data=b"{}"), current_version=1)
        raise AssertionError("append at a wrong expected version was accepted")
    except WrongCurrentVersionError:
        pass

    # Subscription from a position (exclusive): catch-up, caught-up, then a live event.
    sub = client.subscribe_to_all(commit_position=events[1].commit_position,
                                  include_caught_up=True, timeout=30)
    seen = []
    live = NewEvent(type="OrderShipped", data=b'{"live": true}')
    appended = threading.Event()
    for item in sub:
        if isinstance(item, CaughtUp):
            check([e.id for e in seen] == [e.id for e in events[2:]], "catch-up after the position")
            client.append_to_stream(stream, events=live, current_version=3)
            appended.set()
            continue
        if item.stream_name != stream:
            continue
        seen.append(item)
        if item.id == live.id:
            check(appended.is_set(), "live event after caught-up")
            break
    sub.stop()

    # Stream metadata.
    client.set_stream_metadata(stream, metadata={"$maxCount": 100, "owner": "py"})
    meta, version = client.get_stream_metadata(stream)
    check(meta == {"$maxCount": 100, "owner": "py"} and version == 0, "stream metadata round trip")

    # Soft delete, then tombstone.
    client.delete_stream(stream, current_version=4)
    try:
        client.get_stream(stream)
        raise AssertionError("a deleted stream still reads")
    except NotFoundError:
        pass
    gone = f"py-gone-{run}"
    client.append_to_stream(gone, events=NewEvent(type="A", data=b"{}"), current_version=StreamState.NO_STREAM)
    client.tombstone_stream(gone, current_version=0)
    try:
        client.get_stream(gone)
        raise AssertionError("a tombstoned stream still reads")
    except StreamIsDeletedError:
        pass
    try:
        client.append_to_stream(gone, events=NewEvent(type="A", data=b"{}"), current_version=StreamState.ANY)
        raise AssertionError("a tombstoned stream accepted an append")
    except FailedPreconditionError as e:
        # Append answers FAILED_PRECONDITION with the `stream-deleted` trailer, which this
        # client reports without a type of its own.
        check("is deleted" in str(e), "tombstoned append says the stream is deleted")
    try:
        client.append_to_stream(gone, events=[NewEvent(type="A", data=b"{}")] * 2,
                                current_version=StreamState.ANY)
        raise AssertionError("a tombstoned stream accepted a batch append")
    except StreamIsDeletedError:
        pass

    client.close()
    print(f"kurrentdbclient check passed against {uri}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        main(sys.argv[1])
    except Exception as e:  # report any failure as a non-zero exit with the reason
        print(f"kurrentdbclient check FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
