r"""The op families beyond the core engine, one file each, all re-exported by autodiff.functional (F.sin,
F.einsum, ...) and, where PyTorch has them as methods, as Tensor methods (x.sin(), x.prod(), x.flip(0)).

    elementwise.py    sin cos tan sinh cosh arcsin arccos arctan arctan2 sign floor ceil round mod
                      logaddexp hypot
    reductions.py     prod cumsum std
    shape.py          squeeze unsqueeze flatten flip roll repeat repeat_interleave tile tril triu diag
                      diagonal trace sort argsort chunk
    contractions.py   einsum tensordot
    linalg.py         inv det slogdet solve cholesky
    pooling.py        max_pool2d (dilation, ceil_mode, return_indices) max_unpool2d avg_pool2d (ceil_mode,
                      count_include_pad)
    conv1d.py         conv1d conv_transpose1d max_pool1d avg_pool1d (the 2-D ops on a height-1 image)

Every op follows the core's rule protocol (autodiff/tensor.py, ENGINE notes in autodiff/engine.py): a
forward line, then one rule per input written with engine ops, so the same rule runs on arrays (an
ordinary backward) and on Tensors (second derivatives). Each docstring states the derivative.
"""
