"""The simulated CPUs: cores and their clocks, the execution engine, spinlocks, cost presets."""
