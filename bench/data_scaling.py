"""How the project's Ray Data cleaning + tokenisation scales with CPUs and with the nodes of a cluster.

    python bench/data_scaling.py [--rows 100000] [--rounds 3]

Runs the pipeline of ``bench/data_throughput.py`` (same corpus, same steps) on a local
multi-node Ray cluster (``ray.cluster_utils.Cluster``: separate raylets and object stores,
so blocks move between nodes as they would between machines) whose head holds only the
driver, in three layouts: one worker node of 1 CPU; that node and a second one of 1 CPU;
then, on a new cluster, one worker node of 2 CPUs. Each layout gets a warm-up run (its new
workers' first imports) and ``--rounds`` timed runs; the outputs must be the same rows in
every layout.

The 1-CPU and 2-CPU single nodes fit Amdahl's law, T(n) = serial + parallel / n: the serial
part is the driver's own work (counting dedup keys, sampling removed rows, scheduling) and
whatever else does not spread, and it bounds the speedup any number of CPUs can give. The
two 1-CPU nodes against the one 2-CPU node show what spreading the same CPUs over nodes
costs. All of it runs on one 2-core machine, where the driver, the raylets and the workers
share the cores, so the fit overstates the serial part. ``datasets.map`` has no counterpart
to measure: its ``num_proc`` workers are processes of one machine.
"""

import argparse
import json
import tempfile
from pathlib import Path
from statistics import median

import ray
from ray.cluster_utils import Cluster

from data_throughput import ray_pipeline, rows_hash, synthetic_corpus, timed, train_tokenizer

PROJECTED_CPUS = (4, 8, 16, 64)
# ray.cluster_utils.Cluster gives each node 150 MiB of object store by default; the tokenized
# corpus (100K rows of 3 x 256 int64) is about 600 MB, and spilling it to disk is no measure.
NODE_OBJECT_STORE_BYTES = 2 * 2**30


def timed_runs(path: str, tokenizer, rounds: int) -> tuple[list[float], str]:
    """Seconds of ``rounds`` runs after a warm-up, and the hash of the output rows."""
    output = ray_pipeline(path, tokenizer)
    digest = rows_hash([row for batch in output.iter_batches(batch_format="numpy") for row in batch["input_ids"]])
    return [timed(lambda: ray_pipeline(path, tokenizer))[1] for _ in range(rounds)], digest


def amdahl(one_cpu_s: float, two_cpus_s: float) -> tuple[float, float]:
    """(serial, parallel) seconds of T(n) = serial + parallel / n through two measured points."""
    parallel = 2 * (one_cpu_s - two_cpus_s)
    return one_cpu_s - parallel, parallel


def measure_on_cluster(path: str, tokenizer, rounds: int, nodes_added: list[list[int]]) -> list[tuple[list[float], str]]:
    """On a new cluster: for each step, add worker nodes of the given CPUs, then time the pipeline."""
    store = {"object_store_memory": NODE_OBJECT_STORE_BYTES}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **store})
    try:
        measured = []
        for node_cpus in nodes_added:
            for cpus in node_cpus:
                cluster.add_node(num_cpus=cpus, **store)
            cluster.wait_for_nodes()
            if not ray.is_initialized():
                ray.init(address=cluster.address, log_to_driver=False)
                ray.data.DataContext.get_current().enable_progress_bars = False
            measured.append(timed_runs(path, tokenizer, rounds))
        return measured
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per layout")
    args = parser.parse_args()

    corpus = synthetic_corpus(args.rows)
    tokenizer = train_tokenizer(corpus)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "corpus.jsonl")
        Path(path).write_text("".join(json.dumps(row) + "\n" for row in corpus))
        one_cpu_node, two_one_cpu_nodes = measure_on_cluster(path, tokenizer, args.rounds, [[1], [1]])
        (two_cpu_node,) = measure_on_cluster(path, tokenizer, args.rounds, [[2]])
    layouts = {"1 node, 1 CPU": one_cpu_node, "2 nodes, 1 CPU each": two_one_cpu_nodes,
               "1 node, 2 CPUs": two_cpu_node}

    digests = {digest for _, digest in layouts.values()}
    print(f"input rows: {args.rows}; the same output rows in every layout: {len(digests) == 1}")
    medians = {label: median(seconds) for label, (seconds, _) in layouts.items()}
    for label, (seconds, _) in layouts.items():
        print(f"{label:>20}: {' '.join(f'{s:.1f}' for s in seconds)} s, median {medians[label]:.1f} s, "
              f"{args.rows / medians[label]:,.0f} rows/s")
    one_cpu, two_cpus, two_nodes = medians["1 node, 1 CPU"], medians["1 node, 2 CPUs"], medians["2 nodes, 1 CPU each"]
    print(f"speedup from 1 to 2 CPUs: {one_cpu / two_cpus:.2f}x on one node, {one_cpu / two_nodes:.2f}x over two "
          f"nodes (two 1-CPU nodes / one 2-CPU node: {two_cpus / two_nodes:.2f}x)")
    serial, parallel = amdahl(one_cpu, two_cpus)
    if serial <= 0:
        print(f"Amdahl fit: no serial part measurable (serial {serial:.1f} s, parallel {parallel:.1f} s)")
        return
    projected = ", ".join(f"{n} CPUs {serial + parallel / n:.1f} s ({one_cpu / (serial + parallel / n):.1f}x)"
                          for n in PROJECTED_CPUS)
    print(f"Amdahl fit: serial {serial:.1f} s + parallel {parallel:.1f} s / CPUs; projected: {projected}; "
          f"at most {one_cpu / serial:.1f}x on any number of CPUs")


if __name__ == "__main__":
    main()
