"""A tokenizer for Ray tasks' arguments that each worker process unpickles once, not once per task.

Ray Data unpickles a map function's arguments for every task; rebuilding a large tokenizer
(its vocabulary and merges) each time costs more than tokenizing a block.
"""

import hashlib
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
    if key not in _LOADED:
        if len(_LOADED) >= _MAX_LOADED:
            del _LOADED[next(iter(_LOADED))]
        _LOADED[key] = pickle.loads(payload)
    return _LOADED[key]
