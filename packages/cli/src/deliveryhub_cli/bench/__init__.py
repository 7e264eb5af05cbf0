"""`deliveryhub bench`: the whole pipeline measured against this machine's raw limits, in one run.

Every phase keeps the guarantees on: the services' own outbox, inbox, confirms and ack after
commit. The raw limits are measured with the same brokers and database at the services'
concurrency, on temporary names that are removed at the end.
"""

from deliveryhub_cli.bench.options import BenchOptions
from deliveryhub_cli.bench.report import compare
from deliveryhub_cli.bench.run import run_bench

__all__ = ["BenchOptions", "compare", "run_bench"]
