"""Chat prompts from a message list (the tokenizer's chat template, or plain text), and a multi-turn session.

:func:`chat_prompt_ids` renders ``[{"role": ..., "content": ...}, ...]`` with the tokenizer's Jinja chat
template (``apply_chat_template``, rendered to text, then encoded without adding special tokens, since
templates write their own BOS); ``template=False`` joins the messages as plain ``role: content`` lines for
models without one. :class:`ChatSession` keeps the conversation: each turn re-renders and re-prefills the
whole conversation (simple and exact; the KV cache is not kept between turns, so a turn's prefill grows
with the conversation, and a conversation that outgrows the context is refused).

Example:
    >>> session = ChatSession(model, tokenizer, GenerateConfig(max_new_tokens=64), system="Be brief.")  # doctest: +SKIP
    >>> session.ask("What is 2 + 2?").text  # doctest: +SKIP
    '2 + 2 = 4.'
    >>> len(session.messages)  # doctest: +SKIP
    3
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from leanml.errors import LeanmlError
from leanml.llm.eval.generate import GenerateConfig, GenerationResult, generate

ROLES = ("system", "user", "assistant")
Message = dict[str, str]


def check_messages(messages: Sequence[Message]) -> None:
    """Each message is a dict with a ``role`` in :data:`ROLES` and a string ``content``; at least one.

    Example:
        >>> check_messages([{"role": "robot", "content": "hi"}])
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: message 0 has role 'robot' (roles: system, user, assistant)
    """
    if len(messages) == 0:
        raise LeanmlError("no messages to build a chat prompt from", "add a user message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise LeanmlError(f"message {i} must be a dict with a string 'content'", 'e.g. {"role": "user", ...}')
        if m.get("role") not in ROLES:
            raise LeanmlError(f"message {i} has role {m.get('role')!r}", f"roles: {', '.join(ROLES)}")


def plain_chat_text(messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    """The template-free rendering: one ``role: content`` line per message, then ``assistant:`` to answer.

    Example:
        >>> plain_chat_text([{"role": "user", "content": "Hi"}])
        'user: Hi\\nassistant:'
    """
    check_messages(messages)
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"] if add_generation_prompt else lines)


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template.

    Example:
        >>> from types import SimpleNamespace
        >>> has_chat_template(SimpleNamespace(chat_template=None))
        False
    """
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt_text(tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    """The conversation rendered by the tokenizer's chat template (a :class:`LeanmlError` when it has none,
    or when the template refuses the messages, e.g. a system role it does not support).

    Example:
        >>> from types import SimpleNamespace
        >>> chat_prompt_text(SimpleNamespace(chat_template=None), [{"role": "user", "content": "hi"}])
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: the tokenizer has no chat template (pass --no-template ...)
    """
    check_messages(messages)
    if not has_chat_template(tokenizer):
        raise LeanmlError(
            "the tokenizer has no chat template",
            "pass --no-template (plain 'role: text' lines) or --no-chat, or use an instruction-tuned model",
        )
    from jinja2 import TemplateError

    try:
        text = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=add_generation_prompt, tokenize=False
        )
    except (TemplateError, ValueError) as e:
        raise LeanmlError(f"the chat template refused the messages: {e}", "check the roles and their order") from e
    if not isinstance(text, str):
        raise LeanmlError(f"the chat template rendered {type(text).__name__}, not text", "check the tokenizer")
    return text


def chat_prompt_ids(
    tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool = True, template: bool = True
) -> list[int]:
    """Token ids of the conversation: the chat template's text (``template=True``) or :func:`plain_chat_text`,
    encoded without adding special tokens (a template writes its own BOS; plain text gets none).

    Example:
        >>> chat_prompt_ids(tokenizer, [{"role": "user", "content": "Hi"}])  # doctest: +SKIP
        [1, 9690, 198, ...]
    """
    if template:
        text = chat_prompt_text(tokenizer, messages, add_generation_prompt)
    else:
        text = plain_chat_text(messages, add_generation_prompt)
    return [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]


class ChatSession:
    """A conversation with a model: :meth:`ask` adds the user's message, generates and keeps the answer.

    Each turn re-prefills the whole conversation (see the module). Turn ``n`` (from 0) samples with seed
    ``cfg.seed + n``, so a session replays exactly and turns do not repeat one random stream. A turn that
    fails (e.g. the conversation no longer fits the context) leaves the conversation as it was.

    Example:
        >>> session = ChatSession(model, tokenizer, system="You are terse.")  # doctest: +SKIP
        >>> session.ask("Hi!", on_token=print).stop_reason  # doctest: +SKIP
        'eos'
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        cfg: GenerateConfig | None = None,
        system: str | None = None,
        template: bool = True,
    ) -> None:
        if template and not has_chat_template(tokenizer):
            chat_prompt_text(tokenizer, [{"role": "user", "content": ""}])  # raises the no-template error
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = cfg or GenerateConfig()
        self.system = system
        self.template = template
        self.messages: list[Message] = []
        self.turns = 0
        self.reset()

    def reset(self) -> None:
        """Forget the conversation (the system message stays).

        Example:
            >>> session.reset(); session.messages  # doctest: +SKIP
            [{'role': 'system', 'content': 'You are terse.'}]
        """
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.turns = 0

    def ask(self, text: str, on_token: Callable[[str], None] | None = None) -> GenerationResult:
        """Send one user message; stream the answer to ``on_token``; keep both in :attr:`messages`.

        Example:
            >>> session.ask("And 3 + 3?").text  # doctest: +SKIP
            '6.'
        """
        if not text.strip():
            raise LeanmlError("the message is empty", "type some text")
        messages = [*self.messages, {"role": "user", "content": text}]
        ids = chat_prompt_ids(self.tokenizer, messages, add_generation_prompt=True, template=self.template)
        cfg = GenerateConfig.from_dict({**self.cfg.to_dict(), "seed": self.cfg.seed + self.turns})
        result = generate(self.model, self.tokenizer, ids, cfg, on_token=on_token)
        self.messages = [*messages, {"role": "assistant", "content": result.text.strip()}]
        self.turns += 1
        return result
