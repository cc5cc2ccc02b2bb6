"""Celery app for the queue-overhead comparison: one task that does nothing."""
import os

from celery import Celery

url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("noop_tasks", broker=url, backend=url)
# The settings a careful user picks so a killed worker loses nothing
# (acks_late) and results are kept, as narrator does.
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "4")),
                result_expires=86400, task_serializer="json")


@app.task(name="noop")
def noop(payload):
    return payload
