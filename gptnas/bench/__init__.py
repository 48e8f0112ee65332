"""The benchmark harness: every strategy on every benchmark table, paired seeds, one report.

    python -m gptnas.bench --spaces nas-bench-macro,channel-bench-mobilenet,nas-bench-201:cifar10,nas-bench-201:cifar100 \
        --strategies gpt-ga,ga,regularized-evolution,random --seeds 30 --budget 200 --workers 2 --output_dir bench
"""
