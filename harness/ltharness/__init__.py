"""ltharness: run a workload natively and under ltshim, compare memory, speed and outputs."""
