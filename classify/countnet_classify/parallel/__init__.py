"""One run on several devices: ``countnet train --gpus N`` (N processes, one per GPU, or
with ``--device cpu`` N CPU processes), or one process per device started by ``torchrun``.
PyTorch's DistributedDataParallel trains inside the same fastai Learner, so the run
folder, the callbacks and --resume are those of a single-process run.

The batch rule: ``--bs`` is the whole run's batch, split evenly over the N processes
(bs/N each); an epoch has the same number of optimizer steps as in one process, and the
learning rate (the LR finder's, found at --bs, or --lr) means the same. To train bigger
batches on more devices, raise --bs and --lr together (the linear scaling rule) yourself.

Rank 0 does everything a single process does besides its share of the training steps: it
screens the data, builds the decoded cache, runs the LR finder, validates, checkpoints and
writes the run folder. The other ranks receive what it decided, train on their shards,
re-estimate BatchNorm statistics with it (averaged over the ranks), and write nothing.
On CUDA BatchNorm is synchronised across GPUs during training (as fastai's distributed
default); PyTorch's SyncBatchNorm has no CPU implementation, so CPU processes normalise
each by its own shard's batch.

Not fastai's ``fastai.distributed``: the module cannot be imported without Hugging Face
accelerate (its ``DistributedTrainer`` is built on it), and its ``DistributedDL``
broadcasts the shuffled order through CUDA tensors, so it cannot run CPU processes (gloo),
which is how CI tests this. ``shard.shard`` does that loader's job on any backend, and
``shard.DataParallel`` the trainer's. fastai also reads WORLD_SIZE to all-gather every metric
and loss; the processes hide it from fastai (``group.join_launcher``), as the callback does the
distributed part itself.

Modules, lowest first: ``group`` (this process's place in the run and its collectives),
``shard`` (the sharded training loader and the DataParallel callback) and ``launch`` (N
processes started here, each calling an entry function: `countnet train` passes itself).
"""
