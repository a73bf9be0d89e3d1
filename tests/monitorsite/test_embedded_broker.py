"""The embedded broker under concurrent publishers and consumers: nothing lost, nothing twice."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from queue import Empty

from kombu import Connection

from monitorsite.embedded_broker import Transport

MESSAGES = 1500


def options(root: Path) -> dict[str, object]:
    for name in ("queue", "processed", "control"):
        (root / name).mkdir(exist_ok=True)
    return {
        "control_folder": str(root / "control"),
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "processed_folder": str(root / "processed"),
        "store_processed": False,
    }


def publish(root: str, start: int, count: int) -> None:
    with Connection(
        "filesystem://", transport=Transport, transport_options=options(Path(root))
    ) as conn:
        queue = conn.SimpleQueue("probes")
        for number in range(start, start + count):
            queue.put({"n": number, "padding": "x" * 2000})
        queue.close()


def consume(root: str, expected: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    seen = []
    with Connection(
        "filesystem://", transport=Transport, transport_options=options(Path(root))
    ) as conn:
        queue = conn.SimpleQueue("probes")
        wait = 30.0  # for the writers to start
        while True:
            try:
                message = queue.get(block=True, timeout=wait)
            except Empty:
                break
            wait = 3.0  # once they have, a quiet spell means they are done
            seen.append(message.payload["n"])
            message.ack()
    out.put(seen)


def test_it_loses_and_doubles_nothing_while_writers_and_readers_race(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    half = MESSAGES // 2
    readers = [
        context.Process(target=consume, args=(str(tmp_path), MESSAGES, results)) for _ in range(2)
    ]
    writers = [
        context.Process(target=publish, args=(str(tmp_path), 0, half)),
        context.Process(target=publish, args=(str(tmp_path), half, MESSAGES - half)),
    ]
    for process in readers + writers:
        process.start()
    for process in writers:
        process.join(60)
    received = results.get(timeout=120) + results.get(timeout=120)
    for process in readers:
        process.join(60)
        assert process.exitcode == 0  # no reader crashed on a half-written message
    missing = sorted(set(range(MESSAGES)) - set(received))
    assert (len(received), missing) == (MESSAGES, [])
