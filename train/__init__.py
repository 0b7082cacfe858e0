"""Training: config, distributed setup, the loop, loss, checkpoints, TensorBoard, SLURM signals.

    from train.config import Config
    from train.loop import train
    result = train(Config(model="late", esize=384, finetune=True, protocol="X.SpeakerDiarization.Y",
                          video_dir="embeddings/", epochs=50))
    result["best_checkpoint"], result["best_der"], result["experiment_dir"]

Modules: config (Config dataclass), cli (flags), distributed (torchrun world), loop (train),
state (the run's state: Progress, Run), experiment (the folder: lock, one run per folder,
settings checked on resume), model (build, fine-tune or rebuild the model; seeding),
validate (autocast forward, validation, non-finite causes), loss (permutation-invariant
powerset/BCE), metrics (local DER sums), checkpoint (atomic save, resume search, RNG
states), logging (TensorBoard + train.log), preemption (signals and stop file), optim (Adam
groups, schedule), data_adapter (data/ loaders), toydata (in-memory task for tests and
benchmarks).
"""
