"""Train a classifier with the loss formulation you choose (the command: cli/command.py).

    python train.py                                  # defaults: embedded MNIST, cnn, sparse_from_logits
    python train.py loss=softmax_ce model=mlp
    python train.py -m loss=softmax_ce,from_logits seed=0,1,2
    python train.py model._target_=my_models.build   # a model of yours (docs/your_model.md)

`pip install .` installs the same command as `recipes-train`.
"""
import time

_STARTED = time.time()  # a job's start-up time counts from here (keras_loss_recipes/runtime/clock.py)

if __name__ == "__main__":
    from keras_loss_recipes.cli.command import main

    main(process_start=_STARTED)
