"""Running on many devices and hosts: distributed.py (jax.distributed start-up of many
processes), sharding.py (the device mesh, data/FSDP/tensor shardings of the train state and
batches) and partitioning.py (parameter partition rules)."""
