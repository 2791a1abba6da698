"""A tokenizer for Ray tasks' arguments that each worker process unpickles once, not once per task,
and that encodes on one thread there.

Ray Data unpickles a map function's arguments for every task; rebuilding a large tokenizer
(its vocabulary and merges) each time costs more than tokenizing a block. Ray gives each task
one CPU and runs one task per CPU, so the Rust tokenizer's own thread pool, one thread per core
of the node in every worker, would only oversubscribe the cores (it also costs ~15% more CPU
than one thread: 29.7 against 25.5 CPU-s for the 95K rows of ``bench/data_throughput.py``).
"""

import hashlib
import os
import pickle

from ray import cloudpickle

_MAX_LOADED = 4
_LOADED: dict[str, object] = {}  # this process's tokenizers, by the hash of their pickle


class SharedTokenizer:
    """Pickles as the tokenizer's bytes and their hash; unpickles to the tokenizer itself,
    the one this process already loaded for the same bytes when there is one."""

    def __init__(self, tokenizer):
        self._payload = cloudpickle.dumps(tokenizer)
        self._key = hashlib.sha256(self._payload).hexdigest()

    def __reduce__(self):
        return _load, (self._key, self._payload)


def _load(key: str, payload: bytes):
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # read by the Rust tokenizer on every batch call
    if key not in _LOADED:
        if len(_LOADED) >= _MAX_LOADED:
            del _LOADED[next(iter(_LOADED))]
        _LOADED[key] = pickle.loads(payload)
    return _LOADED[key]
