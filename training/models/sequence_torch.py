"""The torch side of :class:`training.models.heads.PageSequenceHead`: a one-layer bidirectional GRU over the
sequence of a page's sentence vectors, a linear layer on each step's output.

Functions of plain values: pages in as numpy arrays (one ``(sentences, features)`` array per page, in page
order), weights out as a dict of numpy arrays, so the head that calls them stores no torch object. Imported
only when such a head is fitted or predicts: nothing else in the package needs torch for it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from training.core.seeding import torch_deterministic

CLIP_NORM = 1.0  # gradient norm clipped to this: a long page cannot blow a step up


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block; the thread count is restored after.

    A GRU steps through a page one sentence at a time, in many small operations that more threads cannot
    share out: on the 2-core machine a full fit took 30 s on one thread and 504 s on torch's default two while
    other jobs kept the cores busy (each small operation waits for both threads). One thread also makes the
    results independent of the machine's core count (two threads differed from one by up to 2e-6).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class PageGRU(nn.Module):
    """Dropout on the inputs and on the GRU's outputs (while training only), a linear layer to class logits."""

    def __init__(self, features: int, hidden: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(features, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, classes)

    def packed_logits(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits of the real (not padding) steps of a padded batch ``(pages, steps, features)``, in the order
        of ``pack_padded_sequence(..., lengths, batch_first=True, enforce_sorted=False).data``."""
        packed = pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.gru(packed._replace(data=self.dropout(packed.data)))  # no dropout drawn for the padding
        return self.out(self.dropout(output.data))

    def page_logits(self, page: torch.Tensor) -> torch.Tensor:
        """Logits ``(sentences, classes)`` of one page ``(sentences, features)``, run alone: no padding, so the
        result does not depend on any other page."""
        output, _ = self.gru(self.dropout(page.unsqueeze(0)))
        return self.out(self.dropout(output[0]))


def train(pages: list[np.ndarray], targets: list[np.ndarray], class_weights: np.ndarray, hidden: int, epochs: int,
          dropout: float, learning_rate: float, batch_pages: int, seed: int | None) -> dict[str, np.ndarray]:
    """The weights of a :class:`PageGRU` trained on ``pages`` (float32 arrays) with ``targets`` (class indices,
    one array per page) by Adam on class-weighted cross-entropy, ``batch_pages`` shuffled pages per step.

    With a ``seed``, the initial weights, dropout masks and page order come from it, and torch's global random
    state is the same after the call as before; same seed -> the same weights, bit for bit (on one thread).
    """
    classes = len(class_weights)
    with torch.random.fork_rng(devices=[]), torch_deterministic(), one_thread():
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            torch.manual_seed(seed)
            generator.manual_seed(seed)
        net = PageGRU(pages[0].shape[1], hidden, classes, dropout)
        tensors = [torch.from_numpy(np.ascontiguousarray(page, dtype=np.float32)) for page in pages]
        labels = [torch.from_numpy(np.asarray(target, dtype=np.int64)) for target in targets]
        loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(class_weights, dtype=torch.float32))
        optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(tensors), generator=generator).tolist()
            for start in range(0, len(order), batch_pages):
                batch = order[start:start + batch_pages]
                lengths = torch.tensor([len(tensors[i]) for i in batch])
                logits = net.packed_logits(pad_sequence([tensors[i] for i in batch], batch_first=True), lengths)
                wanted = pack_padded_sequence(pad_sequence([labels[i] for i in batch], batch_first=True), lengths,
                                              batch_first=True, enforce_sorted=False).data
                loss = loss_fn(logits, wanted)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), CLIP_NORM)
                optimizer.step()
    return {name: value.detach().numpy().copy() for name, value in net.state_dict().items()}


def network(weights: dict[str, np.ndarray]) -> PageGRU:
    """The :class:`PageGRU` with ``weights`` (from :func:`train`), in eval mode; its sizes come from the weights."""
    features = weights["gru.weight_ih_l0"].shape[1]
    classes, both = weights["out.weight"].shape
    with torch.random.fork_rng(devices=[]):  # its initial weights (overwritten) leave torch's random state alone
        net = PageGRU(features, both // 2, classes)
    net.load_state_dict({name: torch.from_numpy(np.asarray(value)) for name, value in weights.items()})
    return net.eval()


def page_logits(net: PageGRU, pages: list[np.ndarray]) -> list[np.ndarray]:
    """Logits ``(sentences, classes)`` of each page's float32 features, each page run alone (see
    :meth:`PageGRU.page_logits`)."""
    with torch.inference_mode(), one_thread():
        return [net.page_logits(torch.from_numpy(np.ascontiguousarray(page, dtype=np.float32))).numpy()
                for page in pages]
