"""Every `defectscope …` command the docs show runs as written, as far as it can be checked without running it.

The commands are read from README.md, docs/**/*.md, the model READMEs and benchmarks/README.md:
lines of code blocks (fenced or indented) and inline code spans. Each one goes through the CLI's
own parser (`build_parser().parse_known_args`, as `main` does), and its `--section.key VALUE`
overrides through the config code the verb itself uses:

- `train CONFIG` / `tune-mosaic CONFIG` / `demo`: `load_config(CONFIG, overrides)`;
- `benchmark SUITE`: `load_suite(SUITE, parse_overrides(overrides))`, which builds every cell;
- `test RUN/checkpoints/final`: the run's config (from the shipped config whose `output_dir` it
  is, a documented `train` command with that `--output_dir`, or the benchmark suite and cell the
  path names) with the overrides on top, built as `test` builds it; a run the docs never
  create is checked against the schema of the model its name or page implies (the key path
  exists and the value has the key's type);
- `predict`, `export`, `serve`, `report`: no overrides at all.

Doc notation: `[--opt V]` is optional (checked as if given), `a|b` and `<a|b>` are alternatives
(each checked), `<name>`, `RUN`, `...` are placeholders (a placeholder value is checked for its
key only; a placeholder in a config path stands for every file it matches).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import shlex
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from defectscope.benchmark.suite import Suite, cell_config, expand_cells, load_suite
from defectscope.cli.main import build_parser
from defectscope.config import (
    ConfigError,
    RunConfig,
    build_config,
    config_to_raw,
    from_dict,
    load_config,
    merge,
    parse_overrides,
    read_yaml,
)
from defectscope.models import MODELS, model_config_class

ROOT = Path(__file__).resolve().parents[1]


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted((ROOT / "src" / "defectscope" / "models").glob("*/README.md"))
    return [f for f in files if f.is_file()]


# --------------------------------------------------------------------------- reading the docs


@dataclass(frozen=True)
class Snippet:
    """A piece of a doc that may hold commands: one code line or one inline code span."""

    path: Path
    line: int
    text: str
    in_code_block: bool

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


FENCE = re.compile(r"^\s*(```|~~~)")
INLINE = re.compile(r"(`+)(.+?)\1", re.DOTALL)


def snippets(path: Path) -> Iterator[Snippet]:
    """Code-block lines (a trailing backslash joins the next) and inline code spans of one file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    prose = []  # the lines outside code blocks, code lines blanked, so spans keep their line numbers
    fenced = False
    pending: tuple[int, str] | None = None  # a code line ending in a backslash, waiting for the next
    previous_blank, indented = True, False
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            fenced = not fenced
            prose.append("")
            continue
        # an indented code block: lines of 4+ spaces after a blank line, or after such a line
        indented = not fenced and line.startswith("    ") and "`" not in line and (previous_blank or indented)
        previous_blank = not line.strip()
        if fenced or indented:
            prose.append("")
            start, text = pending if pending else (number, "")
            text += " " + line.strip()
            if text.endswith("\\"):
                pending = (start, text[:-1])
                continue
            pending = None
            yield Snippet(path, start, text.strip(), True)
        else:
            prose.append(re.sub(r"^\s*(>\s?)+", "", line))  # a block quote's markers are not text
    text = "\n".join(prose)
    for match in INLINE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        yield Snippet(path, line, " ".join(match.group(2).split()), False)


@dataclass(frozen=True)
class Command:
    """`defectscope ARGV…` as one snippet writes it."""

    snippet: Snippet
    argv: tuple[str, ...]

    @property
    def text(self) -> str:
        return "defectscope " + " ".join(self.argv)


UNREADABLE = "<the shell cannot split this line>"
LAUNCHER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*=\S*|nice|-n|\d+|time|/usr/bin/time|-v|python3?|torchrun|--\S+)$")


def commands(snippet: Snippet) -> Iterator[Command]:
    """The `defectscope` commands of a snippet; shell separators (&&, ;, a spaced |) split it."""
    # `[--model.score rec | one_plus_product]`: an optional flag with a choice inside, not a pipe
    text = re.sub(r"\[(\s*--[^\[\]]*)\]", lambda m: re.sub(r"\s*\|\s*", "|", m.group(1)), snippet.text)
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError:
        if re.search(r"(^|[\s;&(])defectscope\s+[a-z]", text):
            yield Command(snippet, (UNREADABLE,))
        return
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token not in ("&&", "||", ";", "|"):
            segment.append(token)
            continue
        for i, word in enumerate(segment):
            launched = i == 0 or segment[i - 1] == "-m" or all(LAUNCHER.match(t) for t in segment[:i])
            argv = tuple(t for t in segment[i + 1:] if t != "\\")
            # in prose, `defectscope train` or `defectscope predict ...` names a verb; it is no command line
            mention = not snippet.in_code_block and len([t for t in argv if t != "..."]) <= 1
            if word == "defectscope" and launched and argv and not mention:
                yield Command(snippet, argv)
                break
        segment = []


def all_commands() -> list[Command]:
    return [c for path in doc_files() for s in snippets(path) for c in commands(s)]


# --------------------------------------------------------------------------- doc notation

PLACEHOLDER = re.compile(r"^(\.\.\.|<[^<>|]*>|[A-Z][A-Z_]*)$")
CHOICE = re.compile(r"<([^<>]*\|[^<>]*)>")


def alternatives(token: str) -> list[str]:
    """`a|b` → [a, b]; `x_<a|b>_y` → [x_a_y, x_b_y]; anything else → [token]."""
    if match := CHOICE.search(token):
        return [token[:match.start()] + alt + token[match.end():] for alt in match.group(1).split("|")]
    if "|" in token and not token.startswith("--"):
        return token.split("|")
    return [token]


def variants(argv: tuple[str, ...]) -> list[list[str]]:
    """One argv per alternative: the i-th variant takes each choice's i-th option (or its last)."""
    options = [alternatives(t) for t in argv]
    count = max((len(o) for o in options), default=1)
    return [[o[min(i, len(o) - 1)] for o in options] for i in range(count)]


def is_placeholder(value: str) -> bool:
    return not value or bool(PLACEHOLDER.match(value)) or "<" in value or "..." in value


def repo_files(path: str, every: str) -> tuple[list[Path], bool]:
    """The repository files a doc's path names, and whether it is a placeholder standing for several.

    `configs/<name>/mtsd.yaml` stands for every match of its `<name>` parts; `CONFIG` or `SUITE`
    alone for every file of `every` (a glob below the root).
    """
    if PLACEHOLDER.match(path):
        return sorted(ROOT.glob(every)), True
    if "<" in path:
        return sorted(ROOT.glob(re.sub(r"<[^<>]*>", "*", path))), True
    return ([ROOT / path] if (ROOT / path).is_file() else []), False


# --------------------------------------------------------------------------- the schema


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def leaf_types(model: str, path: list[str]) -> list[Any]:
    """The types a dotted key path can reach in the RunConfig tree of `model` (every variant of a choice).

    Empty when the path names no key; `Any` when it reaches a free-form mapping.
    """
    if path[:1] == ["model"]:
        if path[1:] == ["name"]:
            return [str]
        current, rest = [model_config_class(model)], path[1:]
    else:
        current, rest = [RunConfig], path
    for i, part in enumerate(rest):
        found = []
        for tp in current:
            tp = _unwrap(tp)
            if tp is Any or typing.get_origin(tp) is dict:
                return [Any]
            if not dataclasses.is_dataclass(tp):
                continue
            names = {f.name for f in dataclasses.fields(tp) if f.init} - {"model", "model_name"}
            if part not in names:
                continue
            field_tp = _unwrap(typing.get_type_hints(tp, include_extras=True)[part])
            if typing.get_origin(field_tp) in (typing.Union, types.UnionType) and i + 1 < len(rest):
                found += [a for a in typing.get_args(field_tp) if a is not type(None)]
            else:
                found.append(typing.get_type_hints(tp, include_extras=True)[part])
        if not found:
            return []
        current = found
    return current


def value_fits(tp: Any, value: Any) -> bool:
    """Whether the config loader accepts `value` for a key of type `tp`."""
    if _unwrap(tp) is Any:
        return True
    holder = dataclasses.make_dataclass("Key", [("value", tp)])
    try:
        from_dict(holder, {"value": value}, "", "docs")
    except (ConfigError, TypeError):
        return False
    return True


def override_pairs(tokens: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """`--a.b V --c=W` → [(a.b, V), (c, W)] as parse_overrides reads them, and what is left over."""
    pairs, stray = [], []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            stray.append(token)
            i += 1
            continue
        key, eq, value = token[2:].partition("=")
        if not eq:
            value = tokens[i + 1] if i + 1 < len(tokens) else ""
            i += 1
        pairs.append((key, value))
        i += 1
    return pairs, stray


def schema_problems(pairs: list[tuple[str, str]], models: list[str]) -> list[str]:
    """Each override's key must exist, and its value fit, in the schema of at least one of `models`."""
    problems = []
    for key, raw in pairs:
        path = key.replace("-", "_").split(".")
        reachable = [(m, tp) for m in models for tp in leaf_types(m, path)]
        if not reachable:
            where = models[0] if len(models) == 1 else "any registered model"
            problems.append(f"--{key}: no such key for {where}")
            continue
        if is_placeholder(raw):
            continue
        value = parse_overrides([f"--{key}", raw])
        for part in path:
            value = value[part.replace("-", "_")] if isinstance(value, dict) else value
        if not any(value_fits(tp, value) for _, tp in reachable):
            problems.append(f"--{key} {raw}: not a value this key takes")
    return problems


# --------------------------------------------------------------------------- runs the docs create


def shipped_configs() -> list[Path]:
    return sorted((ROOT / "configs").rglob("*.yaml"))


@dataclass(frozen=True)
class RunSource:
    """Where a run's config comes from: a config file and the overrides of the command that trained it."""

    config: Path
    overrides: tuple[str, ...] = ()

    def raw(self) -> dict[str, Any]:
        return config_to_raw(load_config(self.config, list(self.overrides)))


def known_runs(cmds: list[Command]) -> dict[str, list[RunSource]]:
    """output_dir → the configs that train into it: shipped configs and the docs' own `train` commands."""
    runs: dict[str, list[RunSource]] = {}
    candidates = [RunSource(p) for p in shipped_configs()]
    for argv in (v for cmd in cmds if cmd.argv[:1] == ("train",) for v in variants(cmd.argv)):
        args, overrides = parse(argv)
        if args is None or any(is_placeholder(t) for t in argv):
            continue
        files, several = repo_files(args.config, "configs/**/*.yaml")
        if files and not several:
            candidates.append(RunSource(files[0], tuple(overrides)))
    for source in candidates:
        try:
            runs.setdefault(load_config(source.config, list(source.overrides)).output_dir, []).append(source)
        except ConfigError:
            pass
    return runs


def suites() -> dict[str, Suite]:
    found = {}
    for path in sorted((ROOT / "benchmarks").glob("*.yaml")):
        with contextlib.suppress(ConfigError):
            suite = load_suite(path)
            found[suite.name] = suite
    return found


def page_models(path: Path) -> list[str]:
    """The model a page is about (docs/results/pvqae.md, models/fader/README.md), else every model."""
    name = path.parent.name if path.name == "README.md" and path.parent.parent.name == "models" else path.stem
    return [name] if name in MODELS else list(MODELS)


def models_in(text: str) -> list[str]:
    """Registered model names in a path or page name, longest first (`mean_image` before `image`)."""
    names = [m for m in sorted(MODELS, key=len, reverse=True) if m in text]
    return names[:1]


# --------------------------------------------------------------------------- checking one command


def parse(argv: list[str]) -> tuple[argparse.Namespace | None, list[str] | str]:
    """What `main` does first: the verb's own flags, and the rest as overrides (or argparse's error)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args, overrides = build_parser().parse_known_args(argv)
    except SystemExit:
        message = err.getvalue().strip().splitlines()
        return None, message[-1] if message else "argparse refused it"
    return args, overrides


def config_error(load: typing.Callable[[], Any]) -> str | None:
    try:
        load()
    except ConfigError as error:
        return str(error)
    return None


class Checker:
    def __init__(self, cmds: list[Command]) -> None:
        self.runs = known_runs(cmds)
        self.suites = suites()

    def problems(self, cmd: Command) -> list[str]:
        found: list[str] = []
        for argv in variants(cmd.argv):
            for problem in self.check(argv, cmd.snippet):
                if problem not in found:
                    found.append(problem)
        return found

    def check(self, argv: list[str], snippet: Snippet) -> list[str]:
        if argv == [UNREADABLE]:
            return [UNREADABLE.strip("<>")]
        if argv and re.fullmatch(r"[A-Z]+", argv[0]):  # `defectscope VERB …` in prose
            return []
        if argv[-1:] in (["--help"], ["-h"]):  # `defectscope VERB --help`: the verb must exist
            return [] if argv[0] in build_parser()._subparsers._group_actions[0].choices else [f"no verb {argv[0]!r}"]
        args, overrides = parse(argv)
        if args is None:
            return [f"the CLI refuses it: {overrides}"]
        assert isinstance(overrides, list)
        pairs, stray = override_pairs(overrides)
        problems = [f"{' '.join(stray)}: not a flag of '{args.verb}' nor a --section.key VALUE"] if stray else []
        if args.verb not in ("train", "test", "tune-mosaic", "demo", "benchmark", "fit"):
            return problems + ([f"'{args.verb}' takes no config overrides: {' '.join(overrides)}"] if overrides else [])
        given = [t for k, v in pairs if not is_placeholder(v) for t in (f"--{k}", v)]
        if args.verb == "fit":  # its config is built from the folder, then the overrides
            return problems + self.fit_problems(args, given)
        placeholders = [(k, v) for k, v in pairs if is_placeholder(v)]
        if args.verb == "test":
            return problems + self.test_problems(args, given, pairs, snippet)
        return problems + self.verb_problems(args, given, placeholders)

    @staticmethod
    def fit_problems(args: argparse.Namespace, given: list[str]) -> list[str]:
        """`fit GOOD_DIR --section.key VALUE`: the overrides on the config fit builds, for a folder that exists."""
        import tempfile

        from defectscope.engine.presets import DEFAULT_MODEL, folder_config

        with tempfile.TemporaryDirectory() as good:
            error = config_error(lambda: folder_config(good, args.model or DEFAULT_MODEL, None, given))
        return [error] if error else []

    def verb_problems(self, args: argparse.Namespace, given: list[str],
                      placeholders: list[tuple[str, str]]) -> list[str]:
        """train / tune-mosaic / demo / benchmark: load the named file with the overrides, as the verb does."""
        if args.verb == "benchmark":
            path, every, what = args.suite, "benchmarks/*.yaml", "suite"
        else:
            path = "configs/demo.yaml" if args.verb == "demo" else args.config
            every, what = "configs/**/*.yaml", "config"
        files, several = repo_files(path, every)
        if not files:
            return [f"{path}: no such {what} in the repository"]
        found = [self.file_problems(args.verb, file, given, placeholders) for file in files]
        if several and any(not p for p in found):  # a placeholder: the command fits some file it stands for
            return []
        return found[0] if not several else [f"{path} (as {files[0].relative_to(ROOT)}): {p}" for p in found[0]]

    @staticmethod
    def file_problems(verb: str, file: Path, given: list[str], placeholders: list[tuple[str, str]]) -> list[str]:
        if verb == "benchmark":
            error = config_error(lambda: load_suite(file, parse_overrides(given) if given else None))
            models = [read_yaml(suite_model_config(file, e)).get("model", {}).get("name", "")
                      for e in read_yaml(file).get("models", {}).values()]
            models = [m for m in models if m in MODELS] or list(MODELS)
        else:
            error = config_error(lambda: load_config(file, given))
            models = [str(read_yaml(file).get("model", {}).get("name", RunConfig.model_name))]
            if verb == "tune-mosaic" and models != ["fader"]:
                error = error or f"tune-mosaic needs a fader config, got {models[0]}"
        problems = [error.replace(str(ROOT) + "/", "")] if error else []
        return problems + schema_problems(placeholders, models)

    def test_problems(self, args: argparse.Namespace, given: list[str], pairs: list[tuple[str, str]],
                      snippet: Snippet) -> list[str]:
        """`test RUN/checkpoints/final --a.b V`: valid on top of the config that run was trained with."""
        run = re.sub(r"/checkpoints/.*$", "", args.checkpoint)
        raws = self.run_configs(run)
        if raws:
            errors = []
            for raw in raws:
                error = config_error(lambda r=raw: build_config(merge(r, parse_overrides(given)) if given else r, run))
                if error is None:
                    return schema_problems([(k, v) for k, v in pairs if is_placeholder(v)], [raw["model"]["name"]])
                errors.append(error)
            return [errors[0]]
        return schema_problems(pairs, models_in(Path(run).name) or page_models(snippet.path))

    def run_configs(self, run: str) -> list[dict[str, Any]]:
        """The raw configs a documented run was trained with (several when the doc leaves a placeholder)."""
        if match := re.fullmatch(r"runs/benchmarks/([^/]+)/cells/([^/]+)", run):
            suite = self.suites.get(match.group(1))
            if suite is None:
                return []
            pattern = re.escape(re.sub(r"<[^<>]*>", "\0", match.group(2))).replace("\0", ".*")
            cells = [c for c in expand_cells(suite) if re.fullmatch(pattern, c.id)]
            return [config_to_raw(cell_config(suite, c, Path("."))) for c in cells]
        if "<" in run or re.search(r"\bRUN\b", run):
            return []
        return [source.raw() for source in self.runs.get(run, [])]


def suite_model_config(suite_file: Path, entry: Any) -> Path:
    config = entry.get("config", "") if isinstance(entry, dict) else ""
    return (suite_file.parent / config).resolve()


# --------------------------------------------------------------------------- overrides shown without a verb

KEY_VALUE = re.compile(r"^((?:model|data|train|eval)\.[\w.]+): (.+)$")
OVERRIDE_START = re.compile(r"^--(?:(?:model|data|train|eval)\.|output_dir\b)")


def plain_flags() -> dict[str, int]:
    """Every verb's own flags and how many values each takes (`--save-maps` 0, `--output` 1)."""
    flags: dict[str, int] = {}
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for verb_parser in sub.choices.values():
        for action in verb_parser._actions:
            for flag in action.option_strings:
                flags[flag] = 0 if action.nargs == 0 else 1
    return flags


def shown_overrides(snippet: Snippet, flags: dict[str, int]) -> list[tuple[str, str]]:
    """`--model.a.b V …` or `model.a.b: V` written on its own, to be added to some command."""
    if match := KEY_VALUE.match(snippet.text):
        return [(match.group(1), match.group(2))]
    if not OVERRIDE_START.match(snippet.text) or "defectscope" in snippet.text:
        return []
    try:
        tokens = shlex.split(snippet.text, comments=True)
    except ValueError:
        return []
    kept, i = [], 0
    while i < len(tokens):
        if tokens[i] in flags:  # a verb's own flag, e.g. --save-maps, with its value
            i += 1 + flags[tokens[i]]
            continue
        kept.append(tokens[i])
        i += 1
    pairs, _ = override_pairs(kept)
    return pairs


# --------------------------------------------------------------------------- the tests


def test_the_docs_show_commands():
    cmds = all_commands()
    verbs = {c.argv[0] for c in cmds}
    assert len(cmds) > 100, f"only {len(cmds)} commands found: is the reader broken?"
    assert {"train", "test", "benchmark", "predict", "export", "serve", "report", "demo"} <= verbs, verbs


def test_every_documented_command_parses_and_its_overrides_fit_the_schema():
    cmds = all_commands()
    checker = Checker(cmds)
    failures = [f"{c.snippet.where}: `{c.text}`: {p}" for c in cmds for p in checker.problems(c)]
    flags = plain_flags()
    for path in doc_files():
        for snippet in snippets(path):
            if pairs := shown_overrides(snippet, flags):
                failures += [f"{snippet.where}: `{snippet.text}`: {p}"
                             for p in schema_problems(pairs, page_models(snippet.path))]
    assert not failures, f"{len(failures)} problem(s) in documented commands:\n" + "\n".join(failures)


MACHINE_PATH = re.compile(
    r"(?<![\w.~-])/(?:root|work|scratch|mnt|media|private|home/[^/\s]+|Users/[^/\s]+|var/folders)(?:/|\b)"
)
COMMAND_START = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:defectscope|python3?|torchrun|pip|nice|curl|git|PYTHONPATH)\b")


def test_no_command_in_the_docs_names_a_machine_specific_path():
    """A reader has no /root, /home/<user> or /work; a `defectscope` command reads no file from /tmp either."""
    failures = []
    for path in doc_files():
        for snippet in snippets(path):
            is_command = snippet.in_code_block or COMMAND_START.match(snippet.text)
            if not is_command:
                continue
            for match in MACHINE_PATH.finditer(snippet.text):
                failures.append(f"{snippet.where}: {match.group(0)!r} in `{snippet.text}`")
            for cmd in commands(snippet):
                failures += [f"{snippet.where}: {t!r} in `{cmd.text}`" for t in cmd.argv if t.startswith("/tmp/")]
    assert not failures, "machine-specific paths in documented commands:\n" + "\n".join(failures)


@pytest.mark.parametrize("argv, expected", [
    (("train", "configs/pvqae/small.yaml", "--model.level_rec_weight", "1.0"), "unknown key 'model.level_rec_weight'"),
    (("train", "configs/pvqae/small.yaml", "--model.routing.level_rec_weight", "1.0"), None),
    (("train", "configs/missing.yaml"), "no such config"),
    (("test", "runs/pvqae_small_mtsd/checkpoints/final", "--model.score", "rec"), "unknown key 'model.score'"),
    (("test", "runs/pvqae_small_mtsd/checkpoints/final", "--model.prior.score", "rec"), None),
    (("test", "RUN/checkpoints/final", "--model.prior.score", "<score>"), None),
    (("test", "RUN/checkpoints/final", "--model.nonsense", "1"), "no such key"),
    (("benchmark", "benchmarks/smoke.yaml", "--train.max_stepz", "3"), "unknown key 'train.max_stepz'"),
    (("predict", "model.onnx", "images/", "--model.lr", "1"), "takes no config overrides"),
    (("fit", "good/", "--model.coreset_ratio", "0.01"), None),
    (("fit", "good/", "--model.coreset_ratios", "0.01"), "unknown key 'model.coreset_ratios'"),
    (("trian", "configs/vq_e/mtsd.yaml"), "the CLI refuses it"),
])
def test_the_checker_catches_a_bad_command(argv, expected):
    """The check can fail: a removed key, a missing file, a misspelt verb each give a problem."""
    snippet = Snippet(ROOT / "docs" / "results" / "pvqae.md", 1, "", True)
    cmd = Command(snippet, argv)
    problems = Checker([cmd]).problems(cmd)
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


def test_an_override_shown_on_its_own_is_checked_against_the_page_model():
    flags = plain_flags()
    pvqae = ROOT / "docs" / "results" / "pvqae.md"
    stale = shown_overrides(Snippet(pvqae, 1, "--model.level_rec_weight 1.0 --save-maps", False), flags)
    assert stale == [("model.level_rec_weight", "1.0")]
    assert schema_problems(stale, page_models(pvqae)) == ["--model.level_rec_weight: no such key for pvqae"]
    current = shown_overrides(Snippet(pvqae, 1, "model.prior.score: rec", False), flags)
    assert schema_problems(current, page_models(pvqae)) == []
    assert schema_problems([("model.prior.score", "best")], ["pvqae"]) == [
        "--model.prior.score best: not a value this key takes"]


def test_the_reader_finds_commands_in_every_notation(tmp_path):
    text = ("`defectscope test RUN/checkpoints/final --model.a 1`\n\n"
            "```bash\nOMP_NUM_THREADS=1 defectscope train configs/x.yaml \\\n    --train.lr 1  # note\n```\n\n"
            "    nice -n 5 defectscope benchmark s.yaml [--only 'a.*']\n\n"
            "pip install faiss-cpu && defectscope test R --model.s rec|budget\n")
    path = tmp_path / "page.md"
    path.write_text(text)
    found = [(c.snippet.line, c.argv) for s in snippets(path) for c in commands(s)]
    assert found == [
        (4, ("train", "configs/x.yaml", "--train.lr", "1")),
        (8, ("benchmark", "s.yaml", "--only", "a.*")),
        (1, ("test", "RUN/checkpoints/final", "--model.a", "1")),
    ]
    assert variants(("test", "R", "--model.s", "rec|budget")) == [
        ["test", "R", "--model.s", "rec"], ["test", "R", "--model.s", "budget"]]
    assert alternatives("runs/mean_image_<z|sq>_mtsd") == ["runs/mean_image_z_mtsd", "runs/mean_image_sq_mtsd"]


def test_every_methods_citation_names_a_section_of_docs_methods():
    """Code cites `docs/methods.md §1.4`: the file ships in the repo and has that section."""
    headings = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", headings, re.MULTILINE))
    failures = []
    for path in sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]):
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"(\S*)methods\.md(?: §(\d+(?:\.\d+)?))?", line):
                if not match.group(1).endswith("docs/") or match.group(2) not in sections:
                    failures.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert sections >= {"1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "2", "3"}, sorted(sections)
    assert not failures, "citations of a methods.md section users do not have:\n" + "\n".join(failures)
