"""Training: config, distributed setup, the loop, loss, checkpoints, TensorBoard, SLURM signals.

    from train.config import Config
    from train.loop import train
    result = train(Config(model="late", esize=384, finetune=True, protocol="X.SpeakerDiarization.Y",
                          video_dir="embeddings/", epochs=50))
    result["best_checkpoint"], result["best_der"], result["experiment_dir"]

Modules: config (Config dataclass), cli (flags), distributed (torchrun world), loop (train),
model (build, fine-tune or rebuild the model; seeding), validate (autocast forward,
validation), loss (permutation-invariant powerset/BCE), metrics (running sums; the local DER
counts are core/local_der.py's), checkpoint (atomic save, resume search, RNG states),
experiment (the folder's lock and settings), state (the run's counters), logging
(TensorBoard + train.log), preemption (signals and stop file), optim (Adam groups,
schedule), data_adapter (data/ loaders), toydata (in-memory task for tests and benchmarks).
"""
