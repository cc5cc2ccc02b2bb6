"""Queue overhead of Celery with a Redis broker and result backend.

Starts its own redis-server (configured like bench_queue's: AOF on with the
same appendfsync policy, noeviction, no RDB) and a Celery worker with N
prefork processes, then measures no-op tasks per second (all sent at once,
results collected) and the added latency of one task at a time (delay +
get). Prints one JSON object per setting, in the same shape as bench_queue.

    /usr/bin/python3 bench/celery/bench_celery.py --workers 1 2 4 8 --jobs 2000

Settings a careful user picks (noop_tasks.py): task_acks_late (a killed
worker loses nothing), results kept a day, JSON. worker_prefetch_multiplier
stays at Celery's default 4: with 1, the Redis transport stops consuming
while a task is unacked and only polls again on a timer (seconds; celery
issues #4378, #7718), which is what made the first draft report ~3 jobs/s.
"""
import argparse
import gc
import importlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def pct(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def run(args, workers, tmp):
    port = free_port()
    rdir = tempfile.mkdtemp(prefix="redis-", dir=tmp)
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--dir", rdir, "--save", "", "--maxmemory-policy", "noeviction",
                              "--appendonly", "yes", "--appendfsync", args.appendfsync],
                             stdout=subprocess.DEVNULL)
    wait_port(port)
    url = f"redis://127.0.0.1:{port}/0"
    env = dict(os.environ, BENCH_REDIS_URL=url, BENCH_PREFETCH=str(args.prefetch),
               PYTHONPATH=HERE)
    log = open(os.path.join(tmp, f"celery-{workers}.log"), "w")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "noop_tasks", "worker",
                               "--concurrency", str(workers), "--pool", "prefork",
                               "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
                               "--without-heartbeat"], env=env, cwd=tmp,
                              stdout=log, stderr=subprocess.STDOUT)
    # The client side: the app module bound to this run's redis.
    os.environ["BENCH_REDIS_URL"] = url
    os.environ["BENCH_PREFETCH"] = str(args.prefetch)
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import noop_tasks
    noop_tasks = importlib.reload(noop_tasks)
    noop = noop_tasks.noop
    payload = "x" * args.payload
    try:
        noop.delay(payload).get(timeout=60)  # the worker is up
        for r in [noop.delay(payload) for _ in range(args.warmup)]:
            r.get(timeout=60)
        # 1. throughput: every task sent, then every result collected.
        t0 = time.perf_counter()
        results = [noop.delay(payload) for _ in range(args.jobs)]
        for r in results:
            r.get(timeout=300)
        elapsed = time.perf_counter() - t0
        ok = sum(1 for r in results if r.successful())
        del results
        # 2. latency: one task at a time.
        lat = []
        for _ in range(args.latency_samples):
            t = time.perf_counter()
            noop.delay(payload).get(timeout=30)
            lat.append((time.perf_counter() - t) * 1e3)
        stored = int(noop_tasks.app.backend.client.eval(
            "return #redis.call('keys', 'celery-task-meta-*')", 0))
        # Results unsubscribe when collected; do it while redis still runs.
        r = None
        gc.collect()
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        redis.terminate()
        redis.wait(10)
    lat.sort()
    return {"system": "celery", "workers": workers, "behave": "echo", "jobs": args.jobs,
            "appendfsync": args.appendfsync, "prefetch": args.prefetch,
            "jobs_per_s": round(args.jobs / elapsed, 1),
            "latency_p50_ms": round(statistics.median(lat), 3) if lat else None,
            "latency_p99_ms": round(pct(lat, 0.99), 3) if lat else None,
            "latency_mean_ms": round(statistics.mean(lat), 3) if lat else None,
            "succeeded": ok, "results_in_redis": stored}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--latency-samples", type=int, default=200)
    ap.add_argument("--payload", type=int, default=16, help="bytes of the task argument")
    ap.add_argument("--appendfsync", default="everysec", choices=["everysec", "always", "no"])
    ap.add_argument("--prefetch", type=int, default=4, help="worker_prefetch_multiplier")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-celery-")
    failed = 0
    try:
        for w in args.workers:
            try:
                print(json.dumps(run(args, w, tmp)), flush=True)
            except Exception as e:  # report and go on with the next setting
                failed += 1
                print(json.dumps({"system": "celery", "workers": w, "error": repr(e)}), flush=True)
                sys.stderr.write(f"bench_celery: logs in {tmp}\n")
    finally:
        if not failed:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
