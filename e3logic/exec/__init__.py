"""Layer exec: heartbeat executor, episodes, budgets, runtimes, memo (DESIGN.md §8)."""
