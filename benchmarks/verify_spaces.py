"""Checks every key of every benchmark table against the space's own network.

    python benchmarks/verify_spaces.py            # all tables found in the benchmark directory

Prints, per table: keys, distinct canonical networks, and how many keys have
exactly the table's params and FLOPs (tables without them: NAS-Bench-201,
checked against its published parameter formula instead).
"""

import argparse
import logging

import torch

from gptnas.benchmarks import TABLES, benchmark_dir, load_table
from gptnas.spaces import get_space
from gptnas.spaces.base import count_macs, count_params

SPACE_OF = {
    "nas-bench-macro": "nas-bench-macro",
    "channel-bench-mobilenet": "channel-bench-mobilenet",
    "channel-bench-resnet": "channel-bench-resnet",
    "nas-bench-201:cifar10": "nas-bench-201",
    "nas-bench-201:cifar100": "nas-bench-201",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="*", default=list(SPACE_OF))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    for table_name in args.tables:
        if not (benchmark_dir() / TABLES[table_name].path).exists():
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
                arch = space.from_key(canonical)
                n3, n1 = arch.count("nor_conv_3x3"), arch.count("nor_conv_1x1")
                matched += params == 73306 + 243040 * n3 + 28000 * n1
        print(f"{table_name}: {len(table)} keys, {len(costs)} canonical networks, {matched} keys match exactly")


if __name__ == "__main__":
    main()
