"""Benchmark: what planning a GGUF on the hub costs, against planning the same file on disk.

The fake hub (tests/hub/fake_hub.py) serves a GGUF with a Llama-3-sized vocabulary (128256 tokens,
280000 merges: a 7.2 MB header) over loopback, with the hub's redirect to a CDN. Counted by the
server: HTTP requests (the redirect included) and bytes sent to read the header, with goals of at
most 3 requests and 8 MB (tests/hub/test_remote.py asserts the same counts in the correctness
suite). Timed side by side: listing the repository, reading the header and planning, against
reading the local file's header and planning. No absolute time is asserted.
"""

from __future__ import annotations

import time

from app.core.model_source import clear_cache, load_gguf_spec
from app.core.placement import plan
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression
from app.hub.listing import list_repo
from app.hub.remote import read_remote_headers
from tests.bench.harness import Bench
from tests.hub.fake_hub import FakeHub
from tests.hub.models import VOCAB128K_FILE, VOCAB128K_REPO

RIG = "2x RTX 3090"


def test_planning_a_128k_vocabulary_gguf_on_the_hub(fake_hub: FakeHub, bench: Bench) -> None:
    from app.core.gguf_spec import spec_from_gguf

    rig = parse_rig_expression(RIG)
    settings = Settings(ctx=8192)
    local_path = fake_hub.blob(VOCAB128K_REPO, VOCAB128K_FILE).file

    def remote_once() -> tuple[float, int, int]:
        fake_hub.log.clear()
        start = time.perf_counter()
        listing = list_repo(VOCAB128K_REPO)
        read = read_remote_headers(listing, listing.pick(file=VOCAB128K_FILE), cache=None)
        plan(rig, spec_from_gguf(read.model), settings)
        took = time.perf_counter() - start
        sent = fake_hub.requests_for(VOCAB128K_REPO, VOCAB128K_FILE)
        return took, len(sent), sum(e.bytes_sent for e in sent)

    def local_once() -> float:
        clear_cache()
        start = time.perf_counter()
        plan(rig, load_gguf_spec(local_path), settings)
        return time.perf_counter() - start

    def counts() -> tuple[int, int]:
        _, requests, sent = remote_once()
        return requests, sent

    requests, sent = counts()
    bench.ratio(
        "hub header: HTTP requests for a 128k-vocabulary GGUF (goal <= 3)",
        lambda: (float(requests), f"{requests} requests (redirect included), {sent / 1e6:.2f} MB sent"),
        below=3.5,
    )
    bench.ratio(
        "hub header: MB sent for a 128k-vocabulary GGUF (goal <= 8)",
        lambda: (sent / 1e6, f"{sent:,} bytes for a header of 7,172,992 bytes"),
        below=8.000001,
    )

    def measure() -> tuple[float, str]:
        remote = min(remote_once()[0] for _ in range(5))
        local = min(local_once() for _ in range(5))
        return (
            remote / local,
            f"plan from the hub (loopback) {remote * 1e3:.0f} ms, from the local file {local * 1e3:.0f} ms",
        )

    bench.ratio("hub header: time to a plan on loopback / local file", measure, below=4.0)
