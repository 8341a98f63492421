"""A character tokenizer that decodes without spaces and carries a small Jinja chat template, for generation tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.llm.conftest import char_tokenizer

# <s>role:content</s> per message, then <s>assistant: to answer (BOS = <s> = 1, EOS = </s> = 2)
TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}:{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)


def chat_tokenizer(template: bool = True) -> Any:
    """The conftest character tokenizer with a joining decoder ("ab", not "a b") and, if asked, :data:`TEMPLATE`."""
    from tokenizers import decoders

    tok = char_tokenizer()
    tok.backend_tokenizer.decoder = decoders.Fuse()
    if template:
        tok.chat_template = TEMPLATE
    return tok


def save_chat_folder(model: Any, folder: Path) -> Path:
    """save_pretrained the model (safetensors) and :func:`chat_tokenizer` into ``folder``."""
    model.save_pretrained(folder)
    chat_tokenizer().save_pretrained(folder)
    return folder
