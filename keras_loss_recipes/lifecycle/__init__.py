"""A run's life: its directory, lock, resume, backup schedule, preemption, processes and records (`Run`)."""
