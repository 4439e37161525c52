"""GPUs through one NVML-like library, chosen by configuration: the system's NVML or simulated GPUs.

``library.open_library`` is the one factory: the agent's sensors and the host (cooldown, GPU
UUIDs, later power limits and clocks) all get their library from it, so nothing downstream
knows or asks which one it is. ``host.HostGpus`` is the host's small interface over it.
"""
