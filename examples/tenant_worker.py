"""
An asyncio worker with per-tenant rate limits, a bulkhead and timeouts.

Run it with ``python examples/tenant_worker.py``. It starts a small TCP
upstream on 127.0.0.1 (a free port), submits jobs from three tenants at
once (one of them noisy), runs every job through one
`AsyncResilientExecutor` keyed by tenant, and prints a table per tenant.

What to look for in the output:

- the noisy tenant (``acme``) is held to its own rate; the quiet ones
  (``globex``, ``initech``) finish early, because the limiter is keyed by
  tenant;
- waiting for a rate-limit token happens *before* the bulkhead, so a
  throttled job never sits on a concurrency slot the quiet tenants need;
- a slow answer hits the per-attempt timeout and is retried.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from stormwall import (
    AsyncResilientExecutor,
    Bulkhead,
    EventBus,
    RetryPolicy,
    TokenBucket,
)
from stormwall.events import Event, LimiterWaited, RetryScheduled


JOBS = {"acme": 24, "globex": 5, "initech": 3}
SLOW_EVERY = 7  # the upstream stalls on the first try of every 7th job


# -- the upstream ---------------------------------------------------------


class Upstream:
    """A line protocol: ``"<tenant> <job>"`` in, ``"done <job>"`` out."""

    def __init__(self) -> None:
        self.first_tries: set[str] = set()
        self.requests = 0
        self.handlers: set[asyncio.Task[None]] = set()

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer one request, stalling on some first tries."""
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            line = (await reader.readline()).decode().strip()
            self.requests += 1
            _tenant, job = line.split()
            if int(job) % SLOW_EVERY == 0 and line not in self.first_tries:
                self.first_tries.add(line)
                await asyncio.sleep(0.5)  # past the client's timeout
            else:
                await asyncio.sleep(0.005)
            writer.write(f"done {job}\n".encode())
            await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def call_upstream(port: int, tenant: str, job: int) -> str:
    """One request to the upstream (the function stormwall protects)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{tenant} {job}\n".encode())
        await writer.drain()
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()


# -- the worker -----------------------------------------------------------


def build_executor(bus: EventBus) -> AsyncResilientExecutor:
    """One pipeline for every tenant; the call key is the tenant."""
    return AsyncResilientExecutor(
        "tenant-worker",
        # Each tenant (the call key): 20 jobs a second, in bursts of 4.
        limiter=TokenBucket(capacity=4, refill_rate=20, name="per_tenant"),
        # At most 4 requests in flight to the upstream, whoever sends them;
        # a job queues for a slot rather than fail.
        bulkhead=Bulkhead(4, max_wait=None, name="upstream-slots"),
        timeout=0.1,  # per attempt
        retry_policy=RetryPolicy(max_attempts=3, base_delay=0.01),
        bus=bus,
    )


async def main() -> int:
    """Run every job; print a table per tenant."""
    upstream = Upstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    bus = EventBus()
    waited: dict[str, float] = defaultdict(float)
    retries: dict[str, int] = defaultdict(int)

    def tally(event: Event) -> None:
        if isinstance(event, LimiterWaited) and event.key is not None:
            waited[event.key] += event.waited
        elif isinstance(event, RetryScheduled) and event.key is not None:
            retries[event.key] += 1

    executor = build_executor(bus)
    loop = asyncio.get_running_loop()
    started = loop.time()
    finished: dict[str, float] = {}

    async def job(tenant: str, n: int) -> None:
        await executor.run(tenant, call_upstream, port, tenant, n)
        finished[tenant] = loop.time() - started

    # Interleave the tenants' jobs as they would arrive from a queue.
    order = sorted(
        (n / count, tenant, n)
        for tenant, count in JOBS.items()
        for n in range(count)
    )
    print(
        f"upstream on 127.0.0.1:{port}; "
        f"{sum(JOBS.values())} jobs from {len(JOBS)} tenants"
    )
    with bus.subscribe(tally, LimiterWaited, RetryScheduled):
        async with asyncio.TaskGroup() as group:
            for _, tenant, n in order:
                group.create_task(job(tenant, n))
    # Let the stalled answers (their callers timed out) finish, then stop.
    await asyncio.gather(*upstream.handlers)
    server.close()
    await server.wait_closed()

    print(
        f"{'tenant':<8} {'jobs':>4} {'retried':>7} {'all done at':>11}"
        f" {'limiter wait':>12}"
    )
    for tenant, count in JOBS.items():
        print(
            f"{tenant:<8} {count:>4} {retries[tenant]:>7} "
            f"{finished[tenant]:>10.2f}s {waited[tenant]:>11.2f}s"
        )
    print(f"upstream requests: {upstream.requests}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
