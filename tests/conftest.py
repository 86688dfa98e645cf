import torch

# One intra-op thread in the test process: the multi-process tests start ranks of their own.
torch.set_num_threads(1)
