"""torch_ref.py: the PyTorch reference MLPResNet (copied from shared/bench/torch_mlpresnet.py so the
interop test does not depend on files outside the repository). state_dict names are SPEC §4's."""
import torch.nn as nn


def block(dim, hidden, norm, p):
    main = nn.Sequential(nn.Linear(dim, hidden), norm(hidden), nn.ReLU(), nn.Dropout(p), nn.Linear(hidden, dim), norm(dim))

    class Res(nn.Module):
        def __init__(s):
            super().__init__()
            s.fn = main

        def forward(s, x):
            return s.fn(x) + x

    return nn.Sequential(Res(), nn.ReLU())


def mlpresnet(dim, hidden=100, blocks=3, classes=10, norm=nn.BatchNorm1d, p=0.1):
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), *[block(hidden, hidden // 2, norm, p) for _ in range(blocks)],
                         nn.Linear(hidden, classes))
