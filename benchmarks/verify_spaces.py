"""Checks every key of every benchmark table against the space's own network.

    python benchmarks/verify_spaces.py            # all tables found in the benchmark directory

Prints, per table: keys, distinct canonical networks, and how many keys have
exactly the table's params and FLOPs (tables without them: NAS-Bench-201,
checked against its published parameter formula instead).
"""

import argparse
import logging

import torch

from gptnas.spaces import get_space
from gptnas.spaces.base import count_macs, count_params
from gptnas.spaces.nas_bench_201 import published_params
from gptnas.tables import TABLES_BY_SPACE, benchmark_dir, load_table, on_disk

SPACE_OF = {table: space for space, datasets in TABLES_BY_SPACE.items() for table in datasets.values()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="*", default=list(SPACE_OF))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    for table_name in args.tables:
        if not on_disk(table_name):
            print(f"{table_name}: not in {benchmark_dir()}, skipped")
            continue
        space, table = get_space(SPACE_OF[table_name]), load_table(table_name)
        costs, matched = {}, 0
        for key, record in table.items():
            canonical = space.key(space.from_key(key))
            if canonical not in costs:
                with torch.device("meta"):
                    model = space.build_model(space.from_key(canonical))
                costs[canonical] = (count_params(model), count_macs(model, space.input_size))
            params, flops = costs[canonical]
            if "params" in record:
                matched += (params, flops) == (record["params"], record["flops"])
            else:
                matched += params == published_params(space.from_key(canonical))
        print(f"{table_name}: {len(table)} keys, {len(costs)} canonical networks, {matched} keys match exactly")


if __name__ == "__main__":
    main()
