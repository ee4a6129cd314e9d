"""The exactness workload of `standby run` over gRPC, written and checked with the published Python
client (kurrentdbclient), which shares no code with standby.

Usage:
  python exactness.py write PRIMARY_URI
  python exactness.py compare PRIMARY_URI SECONDARY_URI

`write` puts on the primary what only an exact copy survives: binary (non-UTF-8) data with binary
metadata, JSON with irregular spacing, empty data, a user-written link, stream metadata, a soft
delete then a recreation, and a tombstone. .ci/run then replicates with `standby run` and calls
`compare`, which reads both clusters with this client and requires every event's id, type, data
bytes, metadata bytes and content type, each stream's metadata, and the deletions to be equal.
"""

import sys
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import NotFoundError, StreamIsDeletedError

STREAMS = ["exact-binary", "exact-json", "exact-empty", "exact-links", "exact-recreated"]
TOMBSTONED = "exact-tombstoned"


def write(uri):
    client = KurrentDBClient(uri=uri)
    any_ = StreamState.ANY
    client.append_to_stream("exact-binary", current_version=any_, events=[
        NewEvent(type="Blob", data=bytes([0xFF, 0xFE, 0x00, 0x80, 0xC3, 0x28]),
                 metadata=bytes([0xC3, 0x28, 0x01, 0x00]), content_type="application/octet-stream"),
        NewEvent(type="Blob", data=bytes(range(256)), metadata=b"",
                 content_type="application/octet-stream"),
    ])
    client.append_to_stream("exact-json", current_version=any_, events=[
        NewEvent(type="Spaced", data=b'{ "a" :1,   "b":[ 1 ,2], "c" : "\\u00e9" }',
                 metadata=b'{"k" : "v" ,"n":[ ]}'),
        NewEvent(type="Compact", data=b'{"a":1}', metadata=b"not json metadata"),
    ])
    client.append_to_stream("exact-empty", current_version=any_, events=[
        NewEvent(type="Empty", data=b"", content_type="application/octet-stream"),
        NewEvent(type="EmptyJson", data=b""),
    ])
    client.append_to_stream("exact-links", current_version=any_, events=[
        NewEvent(type="$>", data=b"0@exact-json", content_type="application/octet-stream"),
        NewEvent(type="$>", data=b"1@exact-binary", metadata=b'{"why":"link"}',
                 content_type="application/octet-stream"),
    ])
    client.set_stream_metadata("exact-json", metadata={"$maxCount": 100, "owner": "py"},
                               current_version=any_)
    client.append_to_stream("exact-recreated", current_version=any_, events=[
        NewEvent(type="Before", data=b'{"life":1}'),
        NewEvent(type="Before", data=b'{"life":1, "n":2}'),
    ])
    client.delete_stream("exact-recreated", current_version=any_)
    client.append_to_stream("exact-recreated", current_version=any_, events=[
        NewEvent(type="After", data=b'{"life" : 2}', metadata=bytes([1, 2, 3])),
    ])
    client.append_to_stream(TOMBSTONED, current_version=any_, events=[
        NewEvent(type="Doomed", data=b"{}"),
    ])
    client.tombstone_stream(TOMBSTONED, current_version=any_)
    client.append_to_stream("exact-last", current_version=any_, events=[
        NewEvent(type="Last", data=str(uuid.uuid4()).encode()),
    ])
    client.close()
    print(f"exactness workload written to {uri}")


def events_of(client, stream):
    try:
        return [(e.id, e.type, e.data, e.metadata, e.content_type, e.stream_position)
                for e in client.get_stream(stream)]
    except NotFoundError:
        return "not found"
    except StreamIsDeletedError:
        return "deleted"


def compare(primary_uri, secondary_uri):
    primary = KurrentDBClient(uri=primary_uri)
    secondary = KurrentDBClient(uri=secondary_uri)
    compared = 0
    for stream in STREAMS + ["exact-last"]:
        mine, theirs = events_of(primary, stream), events_of(secondary, stream)
        if isinstance(mine, str) or not mine:
            raise AssertionError(f"{stream}: the primary has no events ({mine})")
        if mine != theirs:
            raise AssertionError(f"{stream}: the secondary differs\n  primary:   {mine}\n"
                                 f"  secondary: {theirs}")
        compared += len(mine)
        meta_p, _ = primary.get_stream_metadata(stream)
        meta_s, _ = secondary.get_stream_metadata(stream)
        if meta_p != meta_s:
            raise AssertionError(f"{stream}: metadata {meta_p} on the primary, {meta_s} on the secondary")
    for client, side in [(primary, "primary"), (secondary, "secondary")]:
        if events_of(client, TOMBSTONED) != "deleted":
            raise AssertionError(f"{TOMBSTONED} is not tombstoned on the {side}")
    recreated = events_of(secondary, "exact-recreated")
    if [e[1] for e in recreated] != ["After"]:
        raise AssertionError(f"exact-recreated on the secondary: {recreated}")
    primary.close()
    secondary.close()
    print(f"exactness check passed: {compared} events equal byte for byte, metadata and deletions equal")


if __name__ == "__main__":
    try:
        if len(sys.argv) == 3 and sys.argv[1] == "write":
            write(sys.argv[2])
        elif len(sys.argv) == 4 and sys.argv[1] == "compare":
            compare(sys.argv[2], sys.argv[3])
        else:
            sys.exit(__doc__)
    except SystemExit:
        raise
    except Exception as e:  # report any failure as a non-zero exit with the reason
        print(f"exactness check FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
