"""Training: config, distributed setup, the loop, loss, checkpoints, TensorBoard, SLURM signals.

    from train.config import Config
    from train.loop import train
    result = train(Config(model="late", protocol="Synth.SpeakerDiarization.tiny", ...))
"""
