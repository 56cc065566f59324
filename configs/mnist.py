"""MNIST with a small Vision-Transformer-style encoder classifier (4x4 patches as tokens).

  TRANSFORMER_DATA_DIR=../shared/data python run.py train --config configs/mnist.py --workdir /tmp/mnist

Result: (to be measured)
Fashion-MNIST: add --config.data.dataset=fashion_mnist.
"""

import ml_collections

from experiments import configuration


def get_config() -> ml_collections.ConfigDict:
  config = configuration.base_config()
  config.task = 'classification'
  config.seed = 0
  config.num_train_steps = 15000
  config.batch_size = 64
  config.eval_batch_size = 1000

  config.optimizer = 'adamw'
  config.learning_rate = 2e-3
  config.weight_decay = 0.05
  config.schedule = 'cosine'
  config.warmup_steps = 500
  config.grad_clip_norm = 1.0
  config.label_smoothing = 0.1

  config.log_every_steps = 100
  config.eval_every_steps = 1500
  config.checkpoint_every_steps = 1500
  config.keep_checkpoints = 2

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'mnist'   # or 'fashion_mnist'
  config.data.data_dir = ''       # '' = $TRANSFORMER_DATA_DIR (folder holding mnist/)
  config.data.tfds_data_dir = ''  # '' = TFDS default (~/tensorflow_datasets)
  config.data.validation_size = 5000
  config.data.max_shift = 1       # random translation by up to 1 pixel

  config.model = ml_collections.ConfigDict()
  config.model.patch_size = 4     # 28x28 image -> 49 patches (+ [CLS])
  config.model.d_model = 64
  config.model.num_heads = 4
  config.model.num_layers = 4
  config.model.d_ff = 128
  config.model.dropout_rate = 0.0
  config.model.attention_dropout_rate = 0.0
  config.model.pooling = 'cls'
  config.model.stem = 'linear'  # 'linear' (ViT patch embedding) | 'conv' (stride-2 conv stem)
  config.model.positional = 'learned'
  config.model.score = 'scaled_dot'
  config.model.norm = 'pre'
  config.model.dtype = 'float32'
  return config
