"""BERT's batches: masked-language-model sequences from the encoded token shards.

Sequences (``MLMSequences``) respect document boundaries and come in two packings:

- ``docs``: ``[CLS] doc1 [SEP] doc2 [SEP] ...`` -- short documents packed greedily up to
  ``max_seq_len`` (RoBERTa's FULL-DOCS); a long document is cut into full windows and its
  tail packs with the documents after it, so almost no position is padding;
- ``windows``: every document cut into ``[CLS] window [SEP]`` pieces, never mixed.

Masking is dynamic (``MLMCollator``): every batch draws a fresh mask, so each epoch sees the
corpus masked differently (RoBERTa). A ``mask_rate`` share of the maskable tokens (every
token but the special ones and padding) is chosen -- whole words at a time with
``whole_word`` -- and of those 80% become ``[MASK]``, 10% a random ordinary token, 10% stay;
the loss is taken on exactly the chosen positions (``labels``, ``-100`` elsewhere).

Validation masks are seeded per sequence (``seed`` + the sequence's index), so validation
numbers compare across runs whatever the batch size, worker count or number of devices.

With ``data.backend=litdata`` training sequences stream from litdata chunks of the token
stream instead (``llmworks.data.streaming``): ``[CLS] block [SEP]``, blocks of
``max_seq_len - 2`` tokens cut end to end, each document's end-of-text id read as ``[SEP]``
(RoBERTa's FULL-SENTENCES packing: a sequence may span documents), shuffled per epoch by
litdata, a disjoint share per rank, resumed mid-epoch from the loader's state in the
checkpoint. Masking is the same. Validation and test read the memory-mapped shards either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from llmworks.data.samplers import TrainSampler, loader_generator, rank_and_world, resume_point
from llmworks.data.shards import SplitTokens, open_shards
from llmworks.errors import LlmworksError
from llmworks.families.bert.settings import MLMDataConfig, check_packing
from llmworks.tokenization.files import read_tokenizer

if TYPE_CHECKING:
    from llmworks.data.streaming import Stream

IGNORE_INDEX = -100  # label of positions without a loss (PyTorch's and HF's default)
PACKINGS = ("docs", "windows")


class MLMSequences(Dataset):
    """``[CLS] ... [SEP]`` sequences of at most ``max_seq_len`` ids over one split.

    The layout is computed once as token ranges into the memory-mapped split (CSR: sequence
    ``i`` is made of the ranges ``seq_offsets[i]:seq_offsets[i + 1]``), so nothing but the
    index is held in memory.
    """

    def __init__(
        self, split: SplitTokens, max_seq_len: int, cls_id: int, sep_id: int, packing: str = "docs"
    ):
        if packing not in PACKINGS:
            raise LlmworksError(f"bert.data.packing={packing!r}: expected one of {PACKINGS}")
        if max_seq_len < 3:
            raise LlmworksError(f"bert.data.max_seq_len={max_seq_len}: need room for [CLS] x [SEP]")
        self.tokens, self.cls_id, self.sep_id = split.tokens, cls_id, sep_id
        self.max_seq_len, self.packing = max_seq_len, packing
        window = max_seq_len - 2  # room for [CLS] and one [SEP]
        starts, ends, seq_offsets = [], [], [0]
        used = 1  # [CLS]
        for d in range(split.n_docs):
            # the shards end every document with the end-of-text id; [SEP] takes its place
            begin, stop = int(split.offsets[d]), int(split.offsets[d + 1]) - 1
            for s in range(begin, stop, window):
                e = min(s + window, stop)
                if len(starts) > seq_offsets[-1] and (
                    packing == "windows" or used + e - s + 1 > max_seq_len
                ):
                    seq_offsets.append(len(starts))
                    used = 1
                starts.append(s)
                ends.append(e)
                used += e - s + 1
        if len(starts) > seq_offsets[-1]:
            seq_offsets.append(len(starts))
        self.starts, self.ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
        self.seq_offsets = np.asarray(seq_offsets, np.int64)

    def __len__(self) -> int:
        return len(self.seq_offsets) - 1

    def __getitem__(self, i: int) -> dict[str, object]:
        parts = [np.array([self.cls_id], np.int64)]
        for r in range(self.seq_offsets[i], self.seq_offsets[i + 1]):
            parts.append(np.asarray(self.tokens[self.starts[r] : self.ends[r]], np.int64))
            parts.append(np.array([self.sep_id], np.int64))
        return {"index": i, "input_ids": torch.from_numpy(np.concatenate(parts))}

    def n_tokens(self) -> int:
        """Ids over all sequences, [CLS]/[SEP] included."""
        return int((self.ends - self.starts).sum() + len(self.starts) + len(self))


class MLMCollator:
    """Pad a list of sequences and mask them: ``input_ids``, ``attention_mask``, ``labels``.

    ``special_ids`` (``[PAD] [UNK] [CLS] [SEP] [MASK]`` ...) are never chosen and never drawn
    as random replacements. ``continuation`` flags the vocabulary entries that continue a
    word (WordPiece ``##`` pieces), for whole-word masking. With ``seed`` set, each sequence
    gets its own generator seeded from ``seed`` and its dataset index (validation); without,
    the global torch RNG draws (training, seeded by Lightning's ``seed_everything``).
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        mask_id: int,
        special_ids: Sequence[int],
        mask_rate: float,
        whole_word: bool,
        continuation: torch.Tensor | None = None,
        seed: int | None = None,
        pad_to_multiple_of: int | None = None,
        epoch: Callable[[], int] | None = None,
    ):
        if not 0.0 < mask_rate < 1.0:
            raise LlmworksError(f"bert.data.mask_rate={mask_rate}: expected a rate in (0, 1)")
        if whole_word and continuation is None:
            raise LlmworksError("whole-word masking needs the tokenizer's continuation pieces")
        self.pad_id, self.mask_id, self.mask_rate = pad_id, mask_id, mask_rate
        self.whole_word, self.seed, self.pad_to_multiple_of = whole_word, seed, pad_to_multiple_of
        self.epoch = epoch
        self.special = torch.zeros(vocab_size, dtype=torch.bool)
        self.special[list(special_ids) + [pad_id, mask_id]] = True
        self.ordinary = (~self.special).nonzero().flatten()  # random replacements come from here
        self.continuation = (
            continuation if continuation is not None else torch.zeros_like(self.special)
        )

    @classmethod
    def from_tokenizer(cls, tokenizer_json: str | Path, **kwargs) -> MLMCollator:
        """Special ids and ``##`` continuations read from a WordPiece ``tokenizer.json``."""

        tok = read_tokenizer(tokenizer_json)
        vocab = tok.get_vocab(with_added_tokens=True)
        ids = special_token_ids(tok)
        continuation = torch.zeros(tok.get_vocab_size(), dtype=torch.bool)
        continuation[[i for t, i in vocab.items() if t.startswith("##")]] = True
        special = [i for i, t in tok.get_added_tokens_decoder().items() if t.special]
        return cls(
            tok.get_vocab_size(),
            ids["pad"],
            ids["mask"],
            special,
            continuation=continuation,
            **kwargs,
        )

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        seqs = [ex["input_ids"] for ex in examples]
        if self.seed is None:
            masked = [self.mask(torch.nn.utils.rnn.pad_sequence(seqs, True, self.pad_id))]
        else:
            gens = [torch.Generator().manual_seed(self._seed(int(ex["index"]))) for ex in examples]
            masked = [self.mask(s[None], g) for s, g in zip(seqs, gens, strict=True)]
        input_ids = self._pad([row for ids, _ in masked for row in ids], self.pad_id)
        labels = self._pad([row for _, lab in masked for row in lab], IGNORE_INDEX)
        return {
            "input_ids": input_ids,
            "attention_mask": input_ids != self.pad_id,
            "labels": labels,
        }

    def _seed(self, index: int) -> int:
        """The mask seed of sequence ``index``: fixed for validation; for training a new one
        every epoch (dynamic masking) that does not depend on what was drawn before, so a
        run resumed from a checkpoint masks exactly as the uninterrupted run."""
        if self.epoch is None:
            return self.seed * 1_000_003 + index
        return int(np.random.SeedSequence((self.seed, self.epoch(), index)).generate_state(1)[0])

    def _pad(self, rows: list[torch.Tensor], value: int) -> torch.Tensor:
        # pad to the longest sequence of this batch only: padding is compute thrown away
        T = max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            T = -(-T // self.pad_to_multiple_of) * self.pad_to_multiple_of
        out = torch.full((len(rows), T), value, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def mask(
        self, ids: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked copy of ``ids`` ``(B, T)`` and its labels (the original id where a loss is
        taken, ``IGNORE_INDEX`` elsewhere)."""
        maskable = ~self.special[ids]
        if self.whole_word:
            # a word starts at every maskable piece that does not continue a maskable piece
            prev = torch.nn.functional.pad(maskable[:, :-1], (1, 0), value=False)
            starts = maskable & ~(self.continuation[ids] & prev)
            word = torch.cumsum(starts.flatten(), 0).view_as(ids)  # distinct words per batch
            chosen = torch.rand(int(word.max()) + 1, generator=generator) < self.mask_rate
            selected = maskable & chosen[word]
        else:
            selected = maskable & (torch.rand(ids.shape, generator=generator) < self.mask_rate)
        labels = torch.where(selected, ids, IGNORE_INDEX)
        # of the chosen: 80% [MASK], 10% a random ordinary token, 10% left as they are, so
        # the model cannot learn that only [MASK] positions matter (BERT, section 3.1)
        r = torch.rand(ids.shape, generator=generator)
        random_ids = self.ordinary[
            torch.randint(len(self.ordinary), ids.shape, generator=generator)
        ]
        out = torch.where(selected & (r < 0.8), self.mask_id, ids)
        out = torch.where(selected & (r >= 0.8) & (r < 0.9), random_ids, out)
        return out, labels


class _NoLossPadding(Dataset):
    """``seqs`` grown to a multiple of ``world`` with ``[CLS] [SEP]`` entries, which hold no
    maskable token and so add nothing to the metrics. Under DDP the distributed sampler would
    otherwise repeat sequences to even out the ranks and count them twice."""

    def __init__(self, seqs: Dataset, world: int, ids: dict[str, int]):
        self.seqs, self.n = seqs, len(seqs)
        self.empty = torch.tensor([ids["cls"], ids["sep"]])
        self.total = -(-self.n // world) * world

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, i: int) -> dict[str, object]:
        return self.seqs[i] if i < self.n else {"index": i, "input_ids": self.empty}


def special_token_ids(tok) -> dict[str, int]:
    """Ids of ``[PAD] [UNK] [CLS] [SEP] [MASK]`` in a ``tokenizers.Tokenizer``; refuses a
    tokenizer that lacks one (BERT needs all of them)."""
    names = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    ids = {k: tok.token_to_id(v) for k, v in names.items()}
    missing = [names[k] for k, v in ids.items() if v is None]
    if missing:
        raise LlmworksError(
            f"the tokenizer has no {missing}; BERT needs a WordPiece tokenizer "
            "with [PAD] [UNK] [CLS] [SEP] [MASK] (bert.tokenizer: wordpiece)"
        )
    return ids


class Framed:
    """A streamed block of ``max_seq_len - 2`` tokens as ``[CLS] block [SEP]``, each
    end-of-text id inside read as ``[SEP]`` (a picklable callable, for loader workers)."""

    def __init__(self, cls_id: int, sep_id: int, separator_id: int):
        self.cls_id, self.sep_id, self.separator_id = cls_id, sep_id, separator_id

    def __call__(self, index: int, block: torch.Tensor) -> dict[str, object]:
        block = torch.where(block == self.separator_id, self.sep_id, block)
        ids = torch.cat([block.new_tensor([self.cls_id]), block, block.new_tensor([self.sep_id])])
        return {"index": index, "input_ids": ids}


class MLMData(L.LightningDataModule):
    """Train, validation and test loaders of one tokenizer's shards, masked as ``data`` says;
    with ``stream``, training sequences stream from its litdata chunks."""

    def __init__(
        self,
        shards_dir: str | Path,
        tokenizer_json: str | Path,
        data: MLMDataConfig,
        seed: int,
        stream: Stream | None = None,
    ):

        super().__init__()
        check_packing(data.packing, stream is not None)
        self.stream = stream
        self.shards = open_shards(shards_dir, tokenizer_json)
        tok = read_tokenizer(tokenizer_json)
        self.ids = special_token_ids(tok)
        self.vocab_size = tok.get_vocab_size()
        self.cfg, self.seed, self.tokenizer_json = data, seed, tokenizer_json
        self.common = dict(whole_word=data.whole_word, pad_to_multiple_of=data.pad_to_multiple_of)
        # validation and test mask at eval_mask_rate whatever training masks: a recipe that
        # trains at 0.3 is scored on the same task as one that trains at 0.15
        self.val_collator = MLMCollator.from_tokenizer(
            tokenizer_json, seed=data.val_seed, mask_rate=data.eval_mask_rate, **self.common
        )
        self._sequences: dict[str, MLMSequences] = {}

    def sequences(self, split: str) -> MLMSequences:
        if split in self._sequences:
            return self._sequences[split]
        seqs = MLMSequences(
            self.shards.split(split),
            self.cfg.max_seq_len,
            self.ids["cls"],
            self.ids["sep"],
            self.cfg.packing,
        )
        if len(seqs) == 0:
            raise LlmworksError(f"{self.shards.root}: split {split!r} holds no tokens")
        self._sequences[split] = seqs
        return seqs

    def train_dataloader(self) -> DataLoader:
        """Seeded order and masks per epoch (``TrainSampler``, masks keyed on seed, epoch and
        sequence), resumable in the middle of an epoch; under DDP each rank takes its share."""
        rank, world = rank_and_world(self.trainer)
        if self.stream is not None:
            return self._streamed_loader()
        seqs = self.sequences("train")
        sampler = TrainSampler(seqs, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        sampler.start = resume_point(self.trainer)[1] * self.cfg.batch_size
        collator = MLMCollator.from_tokenizer(
            self.tokenizer_json,
            seed=self.seed,
            epoch=_SamplerEpoch(sampler),
            mask_rate=self.cfg.mask_rate,
            **self.common,
        )
        workers = self.cfg.num_workers
        return DataLoader(
            seqs,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            collate_fn=collator,
            num_workers=workers,
            drop_last=len(seqs) > self.cfg.batch_size * world,  # full training batches only
            generator=loader_generator(self.seed),
        )  # workers are not persistent: each epoch's copy of the collator sees its epoch

    def _streamed_loader(self) -> DataLoader:
        """Training sequences from the litdata chunks: litdata's shuffle and rank shares;
        masks keyed on seed, litdata's epoch and the block's index, so a resumed run masks
        as the uninterrupted one."""
        framed = Framed(self.ids["cls"], self.ids["sep"], int(self.shards.meta["separator_id"]))
        blocks = self.stream.blocks(self.cfg.max_seq_len - 2, self.seed, framed)
        collator = MLMCollator.from_tokenizer(
            self.tokenizer_json,
            seed=self.seed,
            epoch=_DatasetEpoch(blocks),
            mask_rate=self.cfg.mask_rate,
            **self.common,
        )
        return self.stream.loader(
            blocks, self.cfg.batch_size, self.cfg.num_workers, self.trainer, collator
        )

    def val_dataloader(self, split: str = "validation") -> DataLoader:
        seqs = self.sequences(split)
        limit = self.cfg.max_val_batches
        if limit:  # a fixed prefix of the split: the same sequences every run
            n = min(len(seqs), limit * self.cfg.batch_size)
            seqs = torch.utils.data.Subset(seqs, range(n))
        world = self.trainer.world_size if self.trainer is not None else 1
        return self._loader(_NoLossPadding(seqs, world, self.ids), self.val_collator)

    def test_dataloader(self) -> DataLoader:
        """The whole test split, masked with the validation seed (``max_val_batches`` does
        not apply: the evaluate stage has its own cap, ``evaluate.max_test_batches``)."""
        return self._loader(self.sequences("test"), self.val_collator)

    def _loader(self, seqs: Dataset, collator: MLMCollator) -> DataLoader:
        workers = self.cfg.num_workers
        return DataLoader(
            seqs,
            batch_size=self.cfg.batch_size,
            shuffle=False,
            collate_fn=collator,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=loader_generator(self.seed),
        )


class _DatasetEpoch:
    """The epoch litdata's loader last set on its dataset (picklable, for loader workers)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __call__(self) -> int:
        return self.dataset.current_epoch


class _SamplerEpoch:
    """The epoch a ``DistributedSampler`` was last set to (picklable, for loader workers)."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler

    def __call__(self) -> int:
        return self.sampler.epoch
