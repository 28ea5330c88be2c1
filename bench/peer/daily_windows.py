"""The quixstreams peer of churn-scoring: per-customer daily windows from the purchases topic.

churn-scoring's `peer` benchmark (services/churn-scoring/benches/peer.rs) runs this
program on the same broker and topic as the scorer, and reports the scorer's rate as a
multiple of this one. It does what the scorer does to each record, in quixstreams' own
idiom:

- decode the value as churn-scoring does (`ScoredSwipe::from_record`): a CloudEvents 1.0
  JSON envelope of type `churnguard.purchase.card_swiped.v1`, insisting on what ingest
  guarantees (well-formed ids, an amount that is not negative, at least one item); a
  record that is not such a swipe is not counted (the scorer sends it to its dead-letter
  topic);
- put it in the customer's day: the store-local calendar day of `data.occurred_at` (the
  date the till wrote, in its own UTC offset), as `local_day` does. The event time given
  to quixstreams is that local wall time read as UTC, so a one-day tumbling window is
  exactly one local day;
- keep, per customer (the record key, which ingest sets to `data.customer`) and day, the
  swipes and their spend in minor units: `tumbling_window(1 day).agg(Count(), Sum())`,
  in quixstreams' default state store (RocksDB, backed by a changelog topic on the
  broker). The grace period is the scorer's horizon (400 days by default): the scorer
  counts a late swipe into its day while that day is within the horizon of the
  customer's last purchase, quixstreams while the window is within the grace period of
  the partition's stream time.

It consumes the topic from the earliest offset in a consumer group of its own, stops once
it has processed `--records` records, and prints one JSON line on stdout:

    {"peer": "quixstreams", "version": ..., "records": N, "seconds": ..., "rate": ...,
     "seconds_through_commit": ..., "rate_through_commit": ...}

`rate` is records/s from the first record's arrival to the last record processed;
`rate_through_commit` runs on to the end of the application's shutdown (the last
checkpoint: state flushed, changelog produced, offsets committed). With `--check` it
emits every window update instead (`.current()`), keeps the last value of each window,
and adds what they add up to (`windows`, `swipes`, `spend`, and `digest`: the wrapping
64-bit sum of FNV-1a-64 over `customer,day,swipes,spend` of every window), which the
benchmark compares with the same figures computed from the records it wrote. A checked
run is slower; its rate is not the baseline.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from importlib.metadata import version

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum
from quixstreams.models.serializers import Deserializer
from quixstreams.utils.json import loads

SPEC_VERSION = "1.0"
EVENT_TYPE = "churnguard.purchase.card_swiped.v1"
DAY_MS = 86_400_000
# The domain's id rule (crates/domain/src/ids.rs, `check_id`).
ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")


class Clock:
    """When the first record arrived (the deserializer sees it first)."""

    first: float | None = None


class CardSwipeDeserializer(Deserializer):
    """A record value as churn-scoring reads it: `{"customer", "spend", "local_ms"}`, or
    `None` where the value is not a card swipe the scorer would count."""

    def __call__(self, value: bytes, ctx) -> dict | None:
        if Clock.first is None:
            Clock.first = time.perf_counter()
        try:
            event = loads(value)
            if event["specversion"] != SPEC_VERSION or event["type"] != EVENT_TYPE:
                return None
            data = event["data"]
            customer = data["customer"]
            minor_units = data["amount"]["minor_units"]
            if (
                not ID.match(customer)
                or not ID.match(data["swipe_id"])
                or not ID.match(data["store_id"])
                or type(minor_units) is not int
                or minor_units < 0
                or type(data["item_count"]) is not int
                or data["item_count"] < 1
            ):
                return None
            occurred_at = datetime.fromisoformat(data["occurred_at"])
            offset = occurred_at.utcoffset()
            if offset is None:
                return None
        except (ValueError, KeyError, TypeError):
            return None
        # Local wall time as if it were UTC: local midnights fall on multiples of a day.
        local_ms = int(occurred_at.timestamp() * 1000) + offset // timedelta(milliseconds=1)
        return {"customer": customer, "spend": minor_units, "local_ms": local_ms}


def event_time(value, headers, timestamp, timestamp_type) -> int:
    """The swipe's local wall time; a record that is no swipe keeps the broker's."""
    return value["local_ms"] if value is not None else timestamp


def fnv1a64(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True, help="bootstrap servers, host:port")
    parser.add_argument("--topic", default="purchases.v1")
    parser.add_argument("--records", type=int, required=True, help="stop after this many")
    parser.add_argument(
        "--grace-days", type=int, default=400, help="the scorer's horizon (horizon_days)"
    )
    parser.add_argument("--check", action="store_true", help="sum every window (slower)")
    args = parser.parse_args()
    logging.getLogger("quixstreams").setLevel(logging.WARNING)

    processed = 0
    last = None

    def on_processed(topic_name, partition, offset):
        nonlocal processed, last
        processed += 1
        if processed == args.records:
            last = time.perf_counter()
            app.stop()

    with tempfile.TemporaryDirectory(prefix="churnguard-peer-") as state_dir:
        app = Application(
            broker_address=args.broker,
            # A group of its own: no committed offsets, so it starts at the earliest.
            consumer_group=f"churnguard-peer-{uuid.uuid4().hex[:12]}",
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
            on_message_processed=on_processed,
        )
        topic = app.topic(
            args.topic,
            key_deserializer="str",
            value_deserializer=CardSwipeDeserializer(),
            timestamp_extractor=event_time,
        )
        mismatched = []

        def is_swipe(value, key, timestamp, headers) -> bool:
            if value is None:
                return False
            if key != value["customer"]:
                # Windows are keyed by the record key; the scorer keys by data.customer.
                mismatched.append(key)
                return False
            return True

        sdf = app.dataframe(topic).filter(is_swipe, metadata=True)
        windows = sdf.tumbling_window(
            duration_ms=timedelta(days=1), grace_ms=timedelta(days=args.grace_days)
        ).agg(swipes=Count(), spend=Sum("spend"))
        latest: dict[tuple[str, int], tuple[int, int]] = {}
        if args.check:

            def keep(value, key, timestamp, headers):
                latest[(key, value["start"] // DAY_MS)] = (value["swipes"], value["spend"])

            windows.current().update(keep, metadata=True)
        else:
            # Closed windows only: within the grace period none closes, so nothing is
            # emitted and the run measures the fold into the state store.
            windows.final()

        app.run(collect=False)
        closed = time.perf_counter()

    if last is None or Clock.first is None:
        print(f"daily_windows: stopped after {processed} of {args.records} records", file=sys.stderr)
        return 1
    if mismatched:
        print(
            f"daily_windows: {len(mismatched)} records keyed other than by data.customer "
            f"(first: {mismatched[0]!r})",
            file=sys.stderr,
        )
        return 1
    seconds = last - Clock.first
    through_commit = closed - Clock.first
    result = {
        "peer": "quixstreams",
        "version": version("quixstreams"),
        "records": processed,
        "seconds": round(seconds, 4),
        "rate": round(processed / seconds, 1),
        "seconds_through_commit": round(through_commit, 4),
        "rate_through_commit": round(processed / through_commit, 1),
    }
    if args.check:
        result["windows"] = len(latest)
        result["swipes"] = sum(s for s, _ in latest.values())
        result["spend"] = sum(m for _, m in latest.values())
        result["digest"] = str(
            sum(fnv1a64(f"{c},{d},{s},{m}") for (c, d), (s, m) in latest.items())
            & 0xFFFFFFFFFFFFFFFF
        )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
