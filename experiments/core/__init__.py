"""The task-independent core: the Task protocol and error types (task.py), the one table of tasks
and verbs (registry.py), the config fields every experiment shares and their checks
(configuration.py), config.model <-> model config dataclasses (model_config.py), the trainer
(trainer.py: compiled train/eval steps) and the run loop around it (loop.py: resume, evaluation,
best checkpoint, plots), optimizers and schedules (optim.py), checkpoints (checkpointing.py), input
sources (data.py, grain_source.py), metrics.jsonl + TensorBoard (metric_logging.py), learning curves
(curves.py), the compilation cache, old-layout checkpoint conversion (convert_layout.py) and the
TensorFlow environment used only when preparing data (tf_env.py). No task is imported here."""
