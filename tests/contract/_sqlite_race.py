"""Child process of the multi-process acquire race (importable under the spawn start method)."""

from __future__ import annotations

from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from core.errors import LeaseLostError
from core.stores.sqlite import SqliteCheckpointStore


def acquire(path: str, job_id: str, owner: str, barrier: Barrier, results: Queue) -> None:
    with SqliteCheckpointStore(path) as store:
        store.load(job_id)  # open and initialise the file before the race starts
        barrier.wait(60)
        try:
            lease = store.acquire(job_id, owner, 60)
            results.put((owner, lease.token))
        except LeaseLostError:
            results.put((owner, None))
        except BaseException as exc:
            results.put((owner, repr(exc)))
