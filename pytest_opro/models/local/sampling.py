"""One generation request and its result, and how the next token is drawn (greedy or seeded sampling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_TOKENS = 256


@dataclass
class GenerationRequest:
    """One completion to run: prompt tokens and sampling settings."""

    tokens: list[int]
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"  # "stop" (end of turn or stop sequence) or "length"


class DecodingSequence:
    """Decoding state of one request inside a batch."""

    def __init__(self, request: GenerationRequest) -> None:
        import numpy as np

        self.request = request
        self.rng = np.random.default_rng(request.seed) if request.temperature > 0 else None
        self.out: list[int] = []
        self.data = b""
        self.text = ""
        self.finish: str | None = None

    def accept(self, token: int, piece: bytes, is_end: bool) -> bool:
        """Record a sampled token; True when the sequence goes on."""
        if is_end:
            self.finish = "stop"
            return False
        self.out.append(token)
        self.data += piece
        self.text = self.data.decode("utf-8", errors="ignore")
        for stop in self.request.stop:
            index = self.text.find(stop) if stop else -1
            if index >= 0:
                self.text = self.text[:index]
                self.finish = "stop"
                return False
        if len(self.out) >= self.request.max_tokens:
            self.finish = "length"
            return False
        return True

    def result(self) -> GenerationResult:
        return GenerationResult(self.text, len(self.request.tokens), len(self.out), self.finish or "length")


def sample_token(logits: Any, request: GenerationRequest, rng: Any) -> int:
    """Greedy at temperature 0, else temperature / top-k / top-p sampling with the request's RNG."""
    import numpy as np

    if request.temperature <= 0 or rng is None:
        return int(np.argmax(logits))
    scores = np.asarray(logits, dtype=np.float64) / float(request.temperature)
    if 0 < request.top_k < scores.size:
        kth = np.partition(scores, -request.top_k)[-request.top_k]
        scores = np.where(scores < kth, -np.inf, scores)
    probs = np.exp(scores - np.max(scores))
    probs /= probs.sum()
    if 0 < request.top_p < 1:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, request.top_p)) + 1]
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    return int(rng.choice(probs.size, p=probs))
