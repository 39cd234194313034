"""Queue cost per job: what the drainer pays the job queue for each synced scene.

Usage: python bench/queue_ops.py [--jobs 2000] [--batch 50]

Fills a JobQueue (sync_queue/queue.py, a real SQLite file in a temporary
folder) with --jobs jobs in one put_many, then drains it the way the drainer
does: take(--batch), then settle the batch (done_many, or done per job when
the queue has no done_many, e.g. on an older checkout). Prints wall and CPU
time per job and the number of write transactions (each one a commit, so an
fsync of the WAL with persist-queue's default synchronous=FULL) per job.
Nothing is asserted.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import print_header  # also puts the repo on sys.path

from sync_queue.queue import JobQueue, make_job  # noqa: E402


def count_commits(queue: JobQueue) -> dict:
    counter = {"commits": 0}

    def trace(statement: str) -> None:
        if statement.lstrip().upper().startswith(("COMMIT", "END")):
            counter["commits"] += 1

    for conn in {id(c): c for c in (queue._putter, queue._getter)}.values():
        conn.set_trace_callback(trace)
    return counter


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs to queue and drain")
    parser.add_argument("--batch", type=int, default=50, help="jobs per take (worker/drainer.py BATCH_SIZE)")
    args = parser.parse_args(argv)
    print_header("job queue cost per job (take + settle)")
    with tempfile.TemporaryDirectory(prefix="plexsync-queuebench-") as tmp:
        queue = JobQueue(str(Path(tmp) / "queue"))
        try:
            settle_many = getattr(queue, "done_many", None)
            print(f"jobs: {args.jobs}   batch: {args.batch}   settle: "
                  f"{'done_many per batch' if settle_many else 'done per job (no done_many here)'}")
            jobs = [make_job(i, "sync_all", {"source": "task", "snapshot": {
                "id": i, "title": f"Title {i}", "details": "d" * 200, "files": [f"/data/stash/scene_{i}.mp4"],
                "performers": ["Jane Doe"], "tags": ["Outdoor", "HD"], "updated_at": "2024-03-05T10:00:00Z"}})
                for i in range(1, args.jobs + 1)]
            counter = count_commits(queue)
            started, cpu = time.perf_counter(), time.process_time()
            queue.put_many(jobs)
            put_wall, put_cpu, put_commits = time.perf_counter() - started, time.process_time() - cpu, counter["commits"]

            counter["commits"] = 0
            drained = 0
            started, cpu = time.perf_counter(), time.process_time()
            while True:
                batch = queue.take(args.batch)
                if not batch:
                    break
                if settle_many:
                    settle_many(batch)
                else:
                    for raw in batch:
                        queue.done(raw)
                drained += len(batch)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            if drained != args.jobs:
                raise SystemExit(f"drained {drained} of {args.jobs} jobs")
            n = args.jobs
            print(f"\n{'step':22s} {'wall ms/job':>12s} {'CPU ms/job':>11s} {'commits/job':>12s}")
            print(f"{'put_many (enqueue)':22s} {put_wall * 1000 / n:12.4f} {put_cpu * 1000 / n:11.4f} {put_commits / n:12.4f}")
            print(f"{'take + settle (drain)':22s} {wall * 1000 / n:12.4f} {cpu * 1000 / n:11.4f} {counter['commits'] / n:12.4f}")
        finally:
            queue.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
