"""Reading models.yaml: `parse_registry` validates the text into a `Registry`; anything wrong is a
`RegistryError` naming the file, the line, the model entry and the field, and nothing has been
changed because of it. `load_registry` reads the file (default: GOAT_MODELS_FILE or the project's).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from goat_dagster import config
from goat_dagster.registry.schema import (
    PROVIDERS,
    ModelEntry,
    MonthlyBudget,
    Registry,
    RouterSettings,
    slugify,
)
from goat_dagster.yaml_lines import LineDict, YamlProblem, line_of, load_yaml


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    entry: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = ".".join(p for p in (f"models.{self.entry}" if self.entry else None, self.field) if p)
        return f"{where}: {what + ': ' if what else ''}{self.message}"


class RegistryError(ValueError):
    """models.yaml is invalid. `problems` says where; nothing has been changed because of it."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid model registry:\n" + "\n".join(f"  {p}" for p in problems))


def _entry_problems(path: str, data: LineDict, key: str, err: ValidationError) -> list[Problem]:
    raw = data["models"][key]
    out = []
    for e in err.errors(include_url=False):
        loc = list(e["loc"])
        # drop discriminated-union tags pydantic inserts (e.g. 'hf' in weights.hf.revision)
        weights = raw.get("weights")
        if (
            len(loc) >= 2
            and loc[0] == "weights"
            and isinstance(weights, dict)
            and loc[1] == weights.get("source")
        ):
            loc.pop(1)
        field = ".".join(str(p) for p in loc) or None
        msg = e["msg"]
        if e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; secrets never go in models.yaml)"
        elif e["type"] == "literal_error" and loc == ["provider"]:
            msg = f"unknown provider {e.get('input')!r}; expected one of {', '.join(PROVIDERS)}"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        elif e["type"] == "union_tag_invalid":
            msg = f"unknown weights source {e.get('input', {}).get('source')!r}; expected package, hf or path"
        line = line_of(raw, loc) or data["models"].key_lines.get(key)
        out.append(Problem(path, line, key, field, msg))
    return out


def parse_registry(text: str, path: Path | str = "models.yaml") -> Registry:
    """Validate registry YAML text; raise `RegistryError` naming file, line, entry and field."""
    path_s = str(path)
    try:
        data = load_yaml(path, text)
    except YamlProblem as exc:
        raise RegistryError([Problem(path_s, exc.line, None, None, exc.message)]) from None
    if not isinstance(data, LineDict):
        raise RegistryError([Problem(path_s, 1, None, None, "expected a mapping with a 'models' section")])
    problems: list[Problem] = []
    allowed_top = {"version", "router", "budgets", "models"}
    for k in data:
        if k not in allowed_top:
            problems.append(
                Problem(
                    path_s,
                    data.key_lines.get(k),
                    None,
                    str(k),
                    f"unknown top-level section; expected {', '.join(sorted(allowed_top))}",
                )
            )
    models_raw = data.get("models")
    if not isinstance(models_raw, LineDict) or not models_raw:
        problems.append(
            Problem(
                path_s,
                data.key_lines.get("models", 1),
                None,
                "models",
                "expected a non-empty mapping of model key -> entry",
            )
        )
        raise RegistryError(problems)

    entries: dict[str, ModelEntry] = {}
    slugs: dict[str, str] = {}
    for key, raw in models_raw.items():
        line = models_raw.key_lines.get(key)
        key_s = str(key)
        if not isinstance(key, str):  # YAML 1.1 reads yes/no/on/off, numbers, dates as non-text
            problems.append(
                Problem(path_s, line, key_s, None, f"key {key_s!r} is not text in YAML: quote it")
            )
            continue
        if not isinstance(raw, dict):
            problems.append(Problem(path_s, line, key_s, None, "entry must be a mapping of fields"))
            continue
        if "key" in raw and raw["key"] != key_s:
            problems.append(
                Problem(
                    path_s,
                    raw.key_lines.get("key", line),
                    key_s,
                    "key",
                    f"'key: {raw['key']}' disagrees with the entry name {key_s!r}",
                )
            )
            continue
        slug = slugify(key_s)
        if not slug:
            problems.append(Problem(path_s, line, key_s, None, "key has no letters or digits"))
            continue
        if slug in slugs:
            problems.append(
                Problem(
                    path_s,
                    line,
                    key_s,
                    None,
                    f"key slugifies to {slug!r}, the same partition key as {slugs[slug]!r} "
                    f"(line {models_raw.key_lines.get(slugs[slug])})",
                )
            )
            continue
        slugs[slug] = key_s
        try:
            entries[key_s] = ModelEntry.model_validate({**raw, "key": key_s})
        except ValidationError as err:
            problems.extend(_entry_problems(path_s, data, key, err))

    router: RouterSettings | None = None
    try:
        router = RouterSettings.model_validate(data.get("router") or {})
    except ValidationError as err:
        for e in err.errors(include_url=False):
            loc = ["router", *e["loc"]]
            problems.append(
                Problem(
                    path_s,
                    line_of(data, loc) or data.line,
                    None,
                    ".".join(map(str, loc)),
                    e["msg"].removeprefix("Value error, "),
                )
            )
    if router is not None:
        names = {m.gateway_name for m in entries.values()} | set(entries)
        complete = bool(entries) and len(entries) == len(models_raw)
        for name, group in router.groups.items():
            where = line_of(data, ["router", "groups", name]) or data.line
            if name in names:
                problems.append(
                    Problem(path_s, where, None, f"router.groups.{name}", "is already the name of a model")
                )
            for key in group.models:
                if complete and key not in entries:
                    problems.append(
                        Problem(path_s, where, None, f"router.groups.{name}.models", f"unknown model {key!r}")
                    )
        names |= set(router.groups)
        for i, fb in enumerate(router.fallbacks):
            for name in [fb.model, *fb.to]:
                if complete and name not in names:
                    problems.append(
                        Problem(
                            path_s,
                            line_of(data, ["router", "fallbacks", i]) or data.line,
                            None,
                            f"router.fallbacks[{i}]",
                            f"unknown model {name!r}",
                        )
                    )
    budgets = _budgets(path_s, data, entries, complete=bool(entries) and len(entries) == len(models_raw))
    problems.extend(budgets.problems)
    if data.get("version", 1) != 1:
        problems.append(
            Problem(
                path_s,
                data.key_lines.get("version"),
                None,
                "version",
                f"unsupported version {data.get('version')!r}; expected 1",
            )
        )
    if problems:
        raise RegistryError(problems)
    return Registry(
        router=router or RouterSettings(),
        budgets=budgets.budgets,
        models=entries,
        source=path_s,
        file_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


@dataclass
class _Budgets:
    budgets: dict[str, MonthlyBudget]
    problems: list[Problem]


def _budgets(path: str, data: LineDict, entries: dict[str, ModelEntry], *, complete: bool) -> _Budgets:
    """`budgets:` — a monthly limit per provider that bills for some model of the file."""
    out = _Budgets({}, [])
    raw = data.get("budgets")
    if raw is None:
        return out
    if not isinstance(raw, LineDict):
        out.problems.append(
            Problem(path, data.key_lines.get("budgets"), None, "budgets", "expected a mapping of provider -> "
                    "{monthly_usd: ...}, e.g. budgets: {azure: {monthly_usd: 50}}")
        )  # fmt: skip
        return out
    billed = sorted({m.billing_provider for m in entries.values()})
    for name, spec in raw.items():
        where = raw.key_lines.get(name) or data.key_lines.get("budgets")
        field = f"budgets.{name}"
        if complete and name not in billed:
            out.problems.append(
                Problem(path, where, None, field, f"no model in this file is billed by {name!r}; "
                        f"providers here: {', '.join(billed)} (a model's `billed_by` names another)")
            )  # fmt: skip
            continue
        if isinstance(spec, int | float) and not isinstance(spec, bool):
            spec = {"monthly_usd": spec}  # `azure: 50` is short for `azure: {monthly_usd: 50}`
        try:
            out.budgets[str(name)] = MonthlyBudget.model_validate(spec)
        except ValidationError as err:
            for e in err.errors(include_url=False):
                loc = [str(p) for p in e["loc"]]
                msg = e["msg"].removeprefix("Value error, ")
                if e["type"] == "model_type":
                    msg = f"expected USD per month or {{monthly_usd: <USD>}}, got {spec!r}"
                elif e["type"] == "missing":
                    msg = "required field is missing"
                elif e["type"] == "extra_forbidden":
                    msg = "unknown field; expected monthly_usd, warn_fraction"
                out.problems.append(
                    Problem(path, line_of(raw, [name, *loc]) or where, None, ".".join([field, *loc]), msg)
                )
    return out


def load_registry(path: Path | str | None = None) -> Registry:
    """Load and validate models.yaml (default: `config.models_file()`)."""
    path = Path(path) if path is not None else config.models_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(
            [
                Problem(
                    str(path),
                    None,
                    None,
                    None,
                    "file not found (set GOAT_MODELS_FILE or run from the project)",
                )
            ]
        ) from None
    return parse_registry(text, path)


def file_hash(path: Path | str | None = None) -> str:
    """sha256 of the registry file's bytes (the registry sensor's cursor)."""
    path = Path(path) if path is not None else config.models_file()
    return hashlib.sha256(path.read_bytes()).hexdigest()
