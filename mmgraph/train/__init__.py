"""mmgraph.train: the trainer, configuration, checkpoints, seeding and distributed helpers."""

from mmgraph.train.checkpoint import (
    FORMAT_VERSION,
    atomic_write,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from mmgraph.train.config import config_from_dict, config_to_dict, load_config, save_config
from mmgraph.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    distributed_sampler,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    main_process_first,
    rank0_only,
    unwrap_model,
)
from mmgraph.train.seed import rng_state, seed_everything, set_rng_state, worker_init_fn
from mmgraph.train.trainer import EpochSampler, TrainConfig, Trainer, plot_history, read_history

__all__ = [
    "EpochSampler",
    "TrainConfig",
    "Trainer",
    "plot_history",
    "read_history",
    "FORMAT_VERSION",
    "DistInfo",
    "all_reduce_mean",
    "atomic_write",
    "barrier",
    "checkpoint_path",
    "cleanup",
    "config_from_dict",
    "config_to_dict",
    "distributed_sampler",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "main_process_first",
    "rank0_only",
    "rng_state",
    "save_checkpoint",
    "save_config",
    "seed_everything",
    "set_rng_state",
    "unwrap_model",
    "worker_init_fn",
]
