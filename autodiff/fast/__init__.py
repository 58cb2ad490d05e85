r"""The fast backend: faster versions of named ops of the reference engine, registered in one table.

    op (reference)                       fast version (file)              what makes it faster
    matmul (tensor.py)                   elementwise.matmul               engine threads; contiguous weight grads
    linear (functional.py)               elementwise.linear               one node for x W^T + b
    sigmoid, tanh, leaky_relu            elementwise.*                    preallocated passes; threads
    conv2d, conv_transpose2d (conv.py)   conv.*                           batch-wide im2col layouts; Winograd
    max_pool2d, avg_pool2d (ops/)        pool.*                           strided views instead of im2col; threads
    batch_norm (norm.py)                 norm.batch_norm                  BLAS channel sums; x_hat kept
    lstm_layer (nets/recurrent.py)       lstm.lstm_layer                  T steps as one hand-differentiated node
    Adam.step (nets/optim.py)            adam.adam_step                   in-place passes on cache-sized pieces
    forward_no_grad (rl/common.py)       inference.forward_no_grad        no Tensor per op for an acting agent

Each fast function's docstring names the reference it replaces and says why it computes the same thing;
tests/test_fast.py compares each with its reference, forward and backward, on shapes that take it.
Loading this package also keeps freed memory in the process (memory.py). The engine's threads
(parallel.py) start when nets.threads.configure_threads gives it more than one.
"""
from autodiff.backend import FAST_OPS
from . import adam, conv, elementwise, inference, lstm, memory, norm, pool
from .taken import taken  # noqa: F401  (tests: which fast kernels ran)

FAST_OPS.update({
    "matmul": elementwise.matmul, "linear": elementwise.linear, "sigmoid": elementwise.sigmoid, "tanh": elementwise.tanh,
    "leaky_relu": elementwise.leaky_relu,
    "conv2d": conv.conv2d, "conv_transpose2d": conv.conv_transpose2d,
    "max_pool2d": pool.max_pool2d, "avg_pool2d": pool.avg_pool2d,
    "batch_norm": norm.batch_norm,
    "lstm_layer": lstm.lstm_layer,
    "Adam.step": adam.adam_step,
    "forward_no_grad": inference.forward_no_grad,
})
memory.keep_freed_memory()
