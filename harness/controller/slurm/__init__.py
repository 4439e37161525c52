"""The Slurm executor: one sbatch job per run, tracked from the controller (docs/slurm.md)."""
