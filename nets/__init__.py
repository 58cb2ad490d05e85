"""Layers, optimizers, losses and data on top of the autodiff engine (PyTorch's names and layouts)."""
from .module import Module, Parameter, Sequential, ModuleList
from .layers import (Linear, Conv1d, Conv2d, ConvTranspose2d, MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, BatchNorm1d,
                     BatchNorm2d, Dropout, Flatten, Unflatten, ReLU, LeakyReLU, Tanh, Sigmoid, Softplus, Identity, mlp)
from .invertible import Invertible1x1Conv
from .masked import MaskedLinear, MaskedConv2d
from .recurrent import Embedding, RNN, LSTM, GRU, detach_state
from .init import manual_seed, get_rng
from .optim import SGD, Adam, RMSProp, Adagrad, clip_grad_norm_
from . import init, optim, losses
from .checkpoint import save_checkpoint, load_checkpoint, save_npz_atomic, load_npz, save_json_atomic
from .threads import configure_threads

configure_threads()      # the same thread policy as train.py's (nets/threads.py): NUMPY_DL_LAB_THREADS or auto
