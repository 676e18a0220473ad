"""Decoding several sequences together in one llama.cpp batch, sharing their common prompt prefix."""

from __future__ import annotations

import ctypes
from typing import Any, Sequence

from pytest_opro.models.local.sampling import (
    DecodingSequence,
    GenerationRequest,
    GenerationResult,
    sample_token,
)

N_CTX = 2048  # context of the single-sequence (fallback) path
BATCH_N_CTX = 4096  # KV cells shared by all sequences of one batch
MAX_SEQUENCES = 16  # sequences decoded together
N_BATCH = 2048  # tokens per llama_decode call
N_UBATCH = 512


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def shared_prefix(prompts: Sequence[list[int]]) -> int:
    """Tokens every prompt of a batch shares from its start, leaving each at least one of its own
    (a sequence needs one token evaluated on its own to get logits)."""
    shared = min(len(p) for p in prompts) - 1
    first, last = min(prompts), max(prompts)  # the longest prefix all share is that of these two
    return max(0, min(shared, common_prefix(first, last)))


def fits_in_batch(requests: Sequence[GenerationRequest]) -> bool:
    """Whether `requests` fit in one batch's KV cells: the prefix all share is stored once (as
    :meth:`BatchDecoder.run` stores it), each remainder and each reply once per request."""
    shared = shared_prefix([r.tokens for r in requests])
    return shared + sum(len(r.tokens) - shared + r.max_tokens for r in requests) <= BATCH_N_CTX


class BatchDecoder:
    """Decodes several sequences at once; sequence 0 holds the shared prompt prefix between batches.

    The shared prefix is evaluated once and copied to each sequence through the KV cache. Each
    prompt's own remainder is evaluated in a call of its own: evaluating the remainders of several
    sequences in one call changes the logits noticeably (up to 1.0 on SmolLM2, llama.cpp 0.3.36),
    which would make an answer depend on which other requests shared its batch. Generation then
    advances all sequences by one token per call, which gives exactly the single-sequence logits.
    """

    def __init__(self, llama_cpp: Any, model: Any, n_threads: int) -> None:
        self.lib = llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = BATCH_N_CTX
        params.n_batch = N_BATCH
        params.n_ubatch = N_UBATCH
        params.n_seq_max = MAX_SEQUENCES + 1
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.kv_unified = True  # sequences share KV cells, so the prefix is stored once
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a batched context")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(model.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self.prefix: list[int] = []

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None

    def reset(self) -> None:
        self.lib.llama_memory_clear(self.mem, True)
        self.prefix = []

    # -- low level -----------------------------------------------------------------------------
    def _decode(self, items: Sequence[tuple[int, int, int, bool]]) -> list[Any]:
        """Decode (token, pos, seq, wants_logits) items; returns the logits rows asked for, in order."""
        import numpy as np

        rows: list[Any] = []
        for start in range(0, len(items), N_BATCH):
            chunk = items[start : start + N_BATCH]
            batch = self.batch
            for i, (token, pos, seq, logits) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = 1 if logits else 0
            batch.n_tokens = len(chunk)
            status = self.lib.llama_decode(self.ctx, batch)
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status}")
            for i, (_, _, _, logits) in enumerate(chunk):
                if logits:
                    pointer = self.lib.llama_get_logits_ith(self.ctx, i)
                    rows.append(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy())
        return rows

    def piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = self.lib.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    # -- one batch -----------------------------------------------------------------------------
    def run(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Generate for up to MAX_SEQUENCES requests whose tokens and outputs fit in the context."""
        lib, mem = self.lib, self.mem
        seqs = [DecodingSequence(r) for r in requests]
        prompts = [r.tokens for r in requests]
        common = shared_prefix(prompts)
        # sequences 1..n from an earlier batch are gone; keep what sequence 0 shares with this prefix
        for s in range(1, MAX_SEQUENCES + 1):
            lib.llama_memory_seq_rm(mem, s, -1, -1)
        keep = common_prefix(self.prefix, prompts[0][:common])
        if keep < len(self.prefix):
            lib.llama_memory_seq_rm(mem, 0, keep, -1)
            self.prefix = self.prefix[:keep]
        try:
            if common > keep:
                self._decode([(t, keep + i, 0, False) for i, t in enumerate(prompts[0][keep:common])])
            self.prefix = list(prompts[0][:common])
            items: list[tuple[int, int, int, bool]] = []
            for s, prompt in enumerate(prompts, start=1):
                if common:
                    lib.llama_memory_seq_cp(mem, 0, s, -1, -1)
                last = len(prompt) - 1
                items.extend((t, common + i, s, common + i == last) for i, t in enumerate(prompt[common:]))
            logits = []
            for s in range(1, len(prompts) + 1):  # one call per prompt remainder (see class notes)
                logits.extend(self._decode([item for item in items if item[2] == s]))
            positions = [len(p) for p in prompts]
            active = list(range(len(seqs)))
            while active:
                step: list[tuple[int, int, int, bool]] = []
                still: list[int] = []
                for row, k in zip(logits, active):
                    seq = seqs[k]
                    token = sample_token(row, seq.request, seq.rng)
                    is_end = bool(lib.llama_vocab_is_eog(self.vocab, token))
                    if seq.accept(token, b"" if is_end else self.piece(token), is_end):
                        step.append((token, positions[k], k + 1, True))
                        positions[k] += 1
                        still.append(k)
                active = still
                logits = self._decode(step) if step else []
        except BaseException:
            self.reset()
            raise
        return [s.result() for s in seqs]


# one loaded model
