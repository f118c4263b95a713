"""Speed: throughput, latency, memory and start-up, as ratios to peers or baselines."""
