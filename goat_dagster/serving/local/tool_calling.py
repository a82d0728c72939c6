"""goat's `chatml-function-calling` chat handler for llama-cpp-python (worker processes only).

The protocol is llama-cpp-python's (0.3.x) own, so a model answers the same prompts: the tools are
listed in the system message, and the assistant begins its turn with `message:` or
`functions.<name>:`, a choice constrained by a tiny grammar; a call's arguments are constrained by
the tool's JSON schema; after each call the model may start another one or end its turn. What
differs from llama-cpp-python's handler (measured in `benchmarks/agent_steps.py`):

- grammars are applied the way llama.cpp's server applies them (`sampling.py`), not to the whole
  vocabulary for every token;
- tokens are drafted from the context and verified in one engine pass (`speculative.py`): the same
  tokens as one by one, in fewer passes (an agent's calls copy paths, names and its own earlier
  calls);
- one prompt per turn: each completion appends to the token ids already in the KV cache instead of
  re-rendering and re-tokenizing the conversation, and the template is compiled once;
- the next call of the conversation spells the model's previous answer with the tokens it generated
  (`token_history.py`), so the KV cache still holds it;
- the request's `max_tokens` bounds the whole response (routing, every call's arguments, the
  follow-ups and the message), so a model that keeps starting new calls stops at the limit;
- after the first call, "another call?" and that call's arguments are one completion under one
  grammar (`next_call_grammar`), so a draft runs on from the call's name into its arguments: one
  engine pass for a repeated call where two completions took two;
- after a call the model ends its turn with its end-of-turn token (llama-cpp-python's follow-up
  grammar only allowed spelling `<|im_end|>` out in characters, so a model that wanted to stop was
  pushed into one more call), and a `message:` answer is free text (llama-cpp-python generated it
  under the follow-up grammar: an empty message, or the text "functions.<name>:");
- tool results are in the prompt (llama-cpp-python's template dropped `tool` messages: the model
  never saw what its calls returned), and calls are laid out in the history exactly as generated;
- `tool_choice` `"required"` is honoured, and tools without a `tool_choice` mean `"auto"` (OpenAI);
- a streamed response may contain tool calls (llama-cpp-python raised an error);
- each response carries what the engine did: `usage.prompt_tokens_details.cached_tokens` (the
  prompt tokens reused from the KV cache) and llama-server's `timings` (prompt tokens evaluated,
  tokens generated, their times), plus `timings.phases`, one entry per completion of the turn;
  the worker's log gets one `goat-turn` line per response with the same numbers (as llama-server
  logs its timings).

Requests for logprobs go to llama-cpp-python's handler unchanged.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp import llama_chat_format, llama_grammar

from goat_dagster.serving.local.generation import Budget, Piece, generate_piece, run_piece
from goat_dagster.serving.local.speculative import DRAFT_MAX
from goat_dagster.serving.local.token_history import TokenHistory

NAME = "chatml-function-calling"
END = "<|im_end|>"

# no HTML autoescaping: llama-cpp-python's template escaped the conversation (a model saw `&#34;` for
# every quote of its own earlier calls, `&lt;` in code), which also broke the cache's prefix match.
# The trailing newline is kept: the turn starts with `<|im_start|>assistant\n`, as ChatML and the
# history render it (Jinja drops a template's last newline by default, so the model answered right
# after `assistant` and the next prompt, which has the newline, matched the KV cache only up to there)
TEMPLATE = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True
).from_string(
    "{% for message in messages %}"
    "<|im_start|>{{ message.role }}\n"
    "{% if message.role == 'system' %}"
    "{{ message.get('content') or '' }}"
    "{% if tools %}"
    "\n\nYou have access to the following functions:\n"
    "{% for tool in tools %}"
    "\nfunctions.{{ tool.function.name }}:\n"
    "{{ tool.function.parameters | tojson }}"
    "\n{% endfor %}"
    "\n\nYou can respond to users messages with either a single message or one or more function calls."
    "\n\nTo respond with a message begin the message with 'message:', use the following format:"
    "\n\nmessage:"
    "\n<message>"
    "\n\nTo respond with one or more function calls begin the message with 'functions.<function_name>:', "
    "use the following format:"
    "\n\nfunctions.<function_name>:"
    '\n{ "arg1": "value1", "arg2": "value2" }'
    "\nfunctions.<function_name>:"
    '\n{ "arg1": "value1", "arg2": "value2" }'
    "{% endif %}"
    "<|im_end|>\n"
    "{% elif message.role == 'assistant' %}"
    "{% if message.get('content') %}{% if tools %}message:\n{% endif %}{{ message.content }}{% endif %}"
    "{% for call in message.get('tool_calls') or [] %}"
    "functions.{{ call.function.name }}:\n{{ call.function.arguments }}\n"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% else %}"
    "{{ message.get('content') or '' }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "<|im_start|>assistant\n"
)


HISTORY = TokenHistory()  # one model per worker process, one request at a time


def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """The prompt of a conversation, up to the start of the assistant's turn."""
    return TEMPLATE.render(messages=messages, tools=tools or [])


def _literals(options: list[str]) -> str:
    return " | ".join(json.dumps(o) for o in options)


@functools.lru_cache(maxsize=256)
def _schema_grammar(schema_json: str) -> llama_grammar.LlamaGrammar:
    try:
        return llama_grammar.LlamaGrammar.from_json_schema(schema_json, verbose=False)
    except Exception:  # a schema the converter cannot handle: any JSON object
        return llama_grammar.LlamaGrammar.from_string(llama_grammar.JSON_GBNF, verbose=False)


def arguments_grammar(tool: dict[str, Any]) -> llama_grammar.LlamaGrammar:
    params = tool["function"].get("parameters") or {"type": "object"}
    return _schema_grammar(json.dumps(params, sort_keys=True))


def next_call_grammar(tools: list[dict[str, Any]]) -> llama_grammar.LlamaGrammar | None:
    """One grammar for "another call?" and that call's arguments: `functions.<name>:` and a newline,
    then the tool's arguments as `arguments_grammar` constrains them — or nothing (the turn ends).
    None when a tool's schema is beyond llama-cpp-python's converter."""
    return _next_call_grammar(json.dumps(tools, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _next_call_grammar(tools_json: str) -> llama_grammar.LlamaGrammar | None:
    try:
        conv = llama_grammar.SchemaConverter(
            prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        calls = []
        for i, tool in enumerate(json.loads(tools_json)):
            fn = tool["function"]
            schema = conv.resolve_refs(fn.get("parameters") or {"type": "object"}, f"tool{i}")
            arguments = conv.visit(schema, f"tool{i}-arguments")
            name = conv._format_literal("functions." + fn["name"] + ":\n")
            calls.append(f"{name} {arguments}")
        conv._add_rule("root", f"({' | '.join(calls)})?")
        return llama_grammar.LlamaGrammar.from_string(conv.format_grammar(), verbose=False)
    except Exception:  # the calls are then chosen and constrained one completion each
        return None


@dataclass
class Turn:
    """One assistant turn: its completions, each appended to the token ids already in the KV cache,
    and what came of them. Its generators yield OpenAI chat-completion deltas."""

    llama: Any
    sampling: dict[str, Any]  # Llama.generate's sampling arguments, as the request asked
    budget: Budget
    tokens: list[int]  # the prompt, then everything generated or appended since
    draft_max: int = DRAFT_MAX  # draft tokens per engine pass
    prompt_tokens: int = 0
    pieces: list[Piece] = field(default_factory=list)
    content: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"

    def __post_init__(self) -> None:
        self.prompt_tokens = len(self.tokens)
        self.on_end: Callable[[], None] = lambda: None
        self.call_prefix = f"call_{uuid.uuid4().hex[:20]}"

    def append(self, text: str) -> None:
        self.tokens += self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _record(self, piece: Piece) -> Piece:
        self.tokens += piece.tokens
        self.pieces.append(piece)
        if piece.finish_reason == "length":
            self.finish_reason = "length"
        return piece

    def streamed(self, phase: str, **kwargs: Any) -> Generator[str, None, Piece]:
        kwargs.setdefault("sampling", self.sampling)
        piece = yield from generate_piece(
            self.llama, self.tokens, phase=phase, budget=self.budget, draft_max=self.draft_max, **kwargs
        )
        return self._record(piece)

    def choose(self, phase: str, options: list[str], *, greedy: bool, optional: bool = False) -> str:
        """Let the model spell one of `options` (or, if `optional`, end its turn instead); "" if it
        did not finish one."""
        grammar = llama_grammar.LlamaGrammar.from_string(
            f"root ::= ({_literals(options)}){'?' if optional else ''}\n", verbose=False
        )
        sampling = {**self.sampling, "temp": 0.0} if greedy else self.sampling
        piece = run_piece(
            self.llama,
            self.tokens,
            phase=phase,
            budget=self.budget,
            sampling=sampling,
            grammar=grammar,
            done=options.__contains__,
            draft_max=self.draft_max,
        )
        self._record(piece)
        return piece.text if piece.text in options else ""

    def message(self, stop: list[str], grammar: Any = None) -> Iterator[dict[str, Any]]:
        self.content = ""
        for text in self.streamed("message", grammar=grammar, stop=stop):
            self.content += text
            yield {"content": text}

    def call(self, tool: dict[str, Any]) -> Iterator[dict[str, Any]]:
        index, name = len(self.calls), tool["function"]["name"]
        fn = {"name": name, "arguments": ""}
        self.calls.append({"id": f"{self.call_prefix}_{index}", "type": "function", "function": fn})
        yield {"tool_calls": [{"index": index, **self.calls[-1], "function": dict(fn)}]}
        for text in self.streamed("arguments", grammar=arguments_grammar(tool)):
            fn["arguments"] += text
            yield {"tool_calls": [{"index": index, "function": {"arguments": text}}]}

    def next_call(self, grammar: Any) -> Generator[dict[str, Any], None, bool]:
        """ "Another call?" and its arguments in one completion (`next_call_grammar`): the drafts run
        on from the call's name into its arguments, one engine pass where two completions took two;
        whether the model made a call."""
        index, text, fn = len(self.calls), "", None
        for chunk in self.streamed("next call", grammar=grammar):
            if fn is None:
                text += chunk
                head, newline, chunk = text.partition("\n")
                if not newline:
                    continue
                fn = {"name": head[len("functions.") : -1], "arguments": ""}
                self.calls.append({"id": f"{self.call_prefix}_{index}", "type": "function", "function": fn})
                yield {"tool_calls": [{"index": index, **self.calls[-1], "function": dict(fn)}]}
            if chunk:
                fn["arguments"] += chunk
                yield {"tool_calls": [{"index": index, "function": {"arguments": chunk}}]}
        return fn is not None

    def calls_until_done(self, tool: dict[str, Any], tools: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The call to `tool`, then more for as long as the model starts another one."""
        by_name = {t["function"]["name"]: t for t in tools}
        options = [f"functions.{n}:" for n in by_name]
        grammar = next_call_grammar(tools)
        self.append("\n")
        yield from self.call(tool)
        while self.finish_reason != "length" and self.budget.allows():
            self.append("\n")
            if grammar is not None:
                if not (yield from self.next_call(grammar)):
                    return
                continue
            picked = self.choose("follow-up", options, greedy=False, optional=True)
            if not picked:
                return
            self.append("\n")
            yield from self.call(by_name[picked[len("functions.") : -1]])

    # ---- the response ----------------------------------------------------------------------------

    def usage(self) -> dict[str, Any]:
        completion = sum(len(p.tokens) for p in self.pieces)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self.pieces[0].cached if self.pieces else 0},
        }

    def timings(self) -> dict[str, Any]:
        """llama-server's `timings` of the whole turn, and one entry per completion (`phases`)."""
        prompt_n = sum(p.evaluated for p in self.pieces)
        prompt_ms = sum(p.prompt_ms for p in self.pieces)
        predicted_n = sum(len(p.tokens) for p in self.pieces)
        predicted_ms = sum(p.predicted_ms for p in self.pieces)
        return {
            "cache_n": self.pieces[0].cached if self.pieces else 0,
            "prompt_n": prompt_n,
            "prompt_ms": round(prompt_ms, 3),
            "prompt_per_token_ms": round(prompt_ms / prompt_n, 3) if prompt_n else None,
            "prompt_per_second": round(prompt_n * 1000 / prompt_ms, 2) if prompt_ms else None,
            "predicted_n": predicted_n,
            "predicted_ms": round(predicted_ms, 3),
            "predicted_per_token_ms": round(predicted_ms / predicted_n, 3) if predicted_n else None,
            "predicted_per_second": round(predicted_n * 1000 / predicted_ms, 2) if predicted_ms else None,
            "phases": [p.timing() for p in self.pieces],
        }

    def end(self) -> None:
        """The turn is over: remember its tokens for the next call, say what the engine did."""
        self.on_end()
        self.log()

    def log(self) -> None:
        """One line in the worker's log: what the engine did for this response."""
        t = self.timings()
        line = {
            **{k: t[k] for k in ("cache_n", "prompt_n", "prompt_ms", "predicted_n", "predicted_ms")},
            "prompt_tokens": self.prompt_tokens,
            "calls": len(self.calls),
            "finish_reason": self.final_reason(),
            "draft_n": sum(p.draft.drafted for p in self.pieces),
            "draft_accepted": sum(p.draft.accepted for p in self.pieces),
            "passes": sum(p.draft.passes for p in self.pieces),
            "phases": {},
        }
        for p in self.pieces:
            line["phases"][p.phase] = round(line["phases"].get(p.phase, 0) + p.prompt_ms + p.predicted_ms, 1)
        print(f"goat-turn {json.dumps(line)}", file=sys.stderr, flush=True)

    def message_dict(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": None if self.calls else self.content}
        if self.calls:
            msg["tool_calls"] = self.calls
            if len(self.calls) == 1:  # the legacy field, as llama-cpp-python sets it
                msg["function_call"] = self.calls[0]["function"]
        return msg

    def final_reason(self) -> str:
        return "tool_calls" if self.calls and self.finish_reason != "length" else self.finish_reason


# ---- the handler -----------------------------------------------------------------------------------


def _tool_choice(
    tools: list[dict[str, Any]] | None, tool_choice: Any, functions: Any, function_call: Any
) -> tuple[list[dict[str, Any]], Any]:
    """OpenAI's rules, the legacy `functions` / `function_call` included: tools without a choice
    mean "auto"; "none" (or no tools) means a plain message."""
    if functions:
        tools = [{"type": "function", "function": f} for f in functions]
    if function_call is not None:
        if isinstance(function_call, str):
            tool_choice = function_call
        elif isinstance(function_call, dict) and "name" in function_call:
            tool_choice = {"type": "function", "function": {"name": function_call["name"]}}
    tools = list(tools or [])
    if not tools or tool_choice == "none":
        return [], None
    return tools, tool_choice or "auto"


def _deltas(
    turn: Turn, tools: list[dict[str, Any]], choice: Any, stop: list[str], grammar: Any
) -> Iterator[dict[str, Any]]:
    if not tools:
        yield from turn.message(stop, grammar)
        return
    by_name = {t["function"]["name"]: t for t in tools}
    if isinstance(choice, dict):  # a named tool: its call only
        name = choice.get("function", {}).get("name")
        if name not in by_name:
            raise ValueError(f"Tool with name '{name}' not found in tools")
        turn.append(f"functions.{name}:\n")
        yield from turn.call(by_name[name])
        return
    if choice not in ("auto", "required"):
        raise ValueError(f"unsupported tool_choice {choice!r}; use auto, required, none or a named function")
    options = [f"functions.{n}:" for n in by_name] + (["message:"] if choice == "auto" else [])
    picked = turn.choose("routing", options, greedy=True)
    if picked == "message:":
        turn.append("\n")
        yield from turn.message(stop)
    elif picked:
        yield from turn.calls_until_done(by_name[picked[len("functions.") : -1]], tools)


def chat_handler(
    *,
    llama: Any,
    messages: list[dict[str, Any]],
    functions: list[dict[str, Any]] | None = None,
    function_call: Any = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: Any = None,
    temperature: float = 0.2,
    top_p: float = 0.95,
    top_k: int = 40,
    min_p: float = 0.05,
    typical_p: float = 1.0,
    stream: bool = False,
    stop: str | list[str] | None = None,
    seed: int | None = None,
    response_format: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    presence_penalty: float | None = 0.0,
    frequency_penalty: float | None = 0.0,
    repeat_penalty: float = 1.1,
    tfs_z: float = 1.0,
    mirostat_mode: int = 0,
    mirostat_tau: float = 5.0,
    mirostat_eta: float = 0.1,
    model: str | None = None,
    logits_processor: Any = None,
    grammar: Any = None,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
    draft_max: int = DRAFT_MAX,
    **kwargs: Any,
) -> Any:
    """A chat completion (a dict, or an iterator of chunks when `stream`) in the protocol above."""
    if logprobs or top_logprobs:
        return llama_chat_format.chatml_function_calling(
            **{k: v for k, v in locals().items() if k not in ("kwargs", "draft_max")}, **kwargs
        )
    tools, choice = _tool_choice(tools, tool_choice, functions, function_call)
    if response_format is not None and not tools:
        grammar = llama_chat_format._grammar_for_response_format(response_format) or grammar
    if seed is not None:
        llama.set_seed(seed)
    sampling = {
        "temp": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "min_p": min_p,
        "typical_p": typical_p,
        "repeat_penalty": repeat_penalty,
        "frequency_penalty": frequency_penalty or 0.0,
        "presence_penalty": presence_penalty or 0.0,
        "tfs_z": tfs_z,
        "mirostat_mode": mirostat_mode,
        "mirostat_tau": mirostat_tau,
        "mirostat_eta": mirostat_eta,
        "logits_processor": logits_processor,
    }
    stops = ([stop] if isinstance(stop, str) else list(stop or [])) + [END]
    text = render(messages, tools).encode("utf-8")
    prompt = HISTORY.tokenize(llama, text)
    turn = Turn(llama, sampling, Budget(max_tokens), list(prompt), draft_max=draft_max)
    turn.on_end = lambda: HISTORY.remember(llama, text, prompt, turn.tokens[len(prompt) :])
    deltas = _deltas(turn, tools, choice, stops, grammar)
    meta = {
        "id": f"chatcmpl-{uuid.uuid4()}",
        "created": int(time.time()),
        "model": model or llama.model_path,
    }
    if stream:
        return _chunks(turn, deltas, meta)
    for _ in deltas:
        pass
    turn.end()
    return {
        **meta,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": turn.message_dict(),
                "logprobs": None,
                "finish_reason": turn.final_reason(),
            }
        ],
        "usage": turn.usage(),
        "timings": turn.timings(),
    }


def _chunks(turn: Turn, deltas: Iterator[dict[str, Any]], meta: dict[str, Any]) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **meta,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    yield chunk({"role": "assistant", "content": None})
    for delta in deltas:
        yield chunk(delta)
    turn.end()
    yield {**chunk({}, turn.final_reason()), "usage": turn.usage(), "timings": turn.timings()}
