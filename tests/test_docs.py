"""The manual (README.md and docs/) against the program it describes (issue 27, "The README:
a front door, then the manual", and item 4).

The convention: an example is a line starting with ``$ `` in a fenced ``console`` block.
Each is checked as written, as cheaply as still catches drift:
- ``countnet ...`` lines (also after ``uv run`` or ``torchrun ... --no-python``) are parsed
  by the real command's own parser (`countnet sweep`'s train options by train's), so an
  option renamed or removed, or a value of the wrong type, fails here. A `datasets/...`
  folder a line names must be one a `countnet gen` line above it on the same page writes
  (its --out, or the name gen derives), and a `runs/NAME` given to predict or export must
  be a run a train line above it names: the paths in the examples are the ones the
  commands really write. Training them all would take hours; README's quickstart is run
  for real, line by line, by tests/test_readme.py.
- ``snakemake ...`` lines are planned by Snakemake (``-n``, a dry run: the whole job takes
  minutes to hours).
- any other line's files in this repository (bench scripts, test files) must exist.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from countnet.cli import app
from countnet.options import spec_values
from countnet_gen.spec import DatasetSpec
from tests.conftest import assert_one_line_error, run_countnet, written

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
# Pages other branches write (the ONNX and loader notes, the failure modes): README links
# them already. Remove this once they are merged, so a missing one fails here.
GEN_ONLY = ("workers", "out", "force", "quiet")  # gen's options that are not DatasetSpec's
ROOT = typer.main.get_command(app)


def leaf_commands() -> dict[str, object]:
    """Every runnable command by its words after `countnet` ("gen", "weights import")."""
    found = {}

    def walk(cmd, words: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*words, name])
        else:
            found[" ".join(words)] = cmd

    walk(ROOT, [])
    return found


def page_of(words: str) -> Path:
    return DOCS / f"{words.split()[0]}.md"


def named(text: str, name: str) -> bool:
    """Whether ``text`` names the option or argument ``name`` as a whole word: `--lr` is
    not named by `--lr-policy` alone."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def missing_names(cmd, text: str) -> list[str]:
    """The command's options (every spelling: --x, --no-x, -q) and arguments (DATA, RUN)
    that ``text`` does not name."""
    names = []
    for p in cmd.params:
        if p.param_type_name == "option":
            names += [*p.opts, *p.secondary_opts]
        else:
            names.append(p.name.upper())
    return [n for n in names if not named(text, n)]


@pytest.mark.parametrize("words", sorted(leaf_commands()))
def test_each_verbs_page_names_every_option(words):
    page = page_of(words)
    assert page.is_file(), f"`countnet {words}` has no page {page.relative_to(REPO)}"
    missing = missing_names(leaf_commands()[words], page.read_text())
    assert not missing, f"{page.relative_to(REPO)} does not name {missing}"


def test_a_page_that_drops_an_option_fails():
    """The check above catches what it exists for: an option taken out of its page."""
    train = leaf_commands()["train"]
    text = page_of("train").read_text()
    assert missing_names(train, text) == []
    assert missing_names(train, text.replace("--freeze-epochs", "")) == ["--freeze-epochs"]
    assert "DATA" in missing_names(train, text.replace("DATA", "the data"))


def test_every_verb_is_in_the_readme_table_with_its_page():
    readme = README.read_text()
    for verb in ROOT.commands:
        row = next(
            (ln for ln in readme.splitlines() if ln.startswith(f"| `countnet {verb}` |")), ""
        )
        assert f"(docs/{verb}.md)" in row, f"README's verb table lacks countnet {verb}"
    assert "uv run snakemake all" in readme and "uv run pytest" in readme
    assert "pip install uv" in readme
    assert len(readme.splitlines()) <= 160, "README is the front door: the manual is docs/"


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken
    assert {DOCS / "interop.md", DOCS / "reliability.md"} <= {
        (REPO / t).resolve() for t in LINK.findall(README.read_text())
    }


def examples(page: Path) -> list[str]:
    """The ``$ `` lines of the page's ``console`` blocks, as written."""
    lines, inside = [], False
    for ln in page.read_text().splitlines():
        if ln.startswith("```"):
            inside = ln.strip() == "```console"
        elif inside and ln.startswith("$ "):
            lines.append(ln[2:])
    return lines


def argv_of(line: str) -> list[str]:
    """What runs: the words after `uv run [--extra X]` or `torchrun ... --no-python`."""
    argv = shlex.split(line, comments=True)
    if argv[:2] == ["uv", "run"]:
        argv = argv[2:]
        while argv and argv[0] == "--extra":
            argv = argv[2:]
    if argv and argv[0] == "torchrun":
        argv = argv[argv.index("--no-python") + 1 :]
    return argv


def parse(args: list[str]):
    """`countnet ARGS` through the command's own parser, without running it: the leaf
    command and its parsed context (a usage error raises)."""
    cmd, words = ROOT, []
    while hasattr(cmd, "commands"):
        words.append(args[0])
        cmd, args = cmd.commands[args[0]], args[1:]
    ctx = cmd.make_context(f"countnet {' '.join(words)}", list(args))
    if words == ["sweep"]:  # the other options are train's, parsed by train
        train = ROOT.commands["train"]
        train.make_context("countnet sweep", list(ctx.args))
        for param in ctx.params["param"]:
            option = "--" + param.split("=")[0].replace("_", "-")
            assert any(option in p.opts for p in train.params), param
    return " ".join(words), ctx


def dataset_written(ctx) -> str:
    """The folder `countnet gen` writes for these options: --out, else the name it derives."""
    if ctx.params["out"] is not None:
        return Path(ctx.params["out"]).as_posix()
    options = {k: v for k, v in ctx.params.items() if k not in GEN_ONLY}
    return DatasetSpec(**spec_values(DatasetSpec, options)).out_dir().as_posix()


def check_page_examples(page: Path) -> int:
    """Parse every countnet line of ``page`` in order, following the datasets and runs it
    makes; returns how many were checked."""
    written, trained, n = set(), set(), 0
    for line in examples(page):
        argv = argv_of(line)
        if not argv or argv[0] != "countnet":
            continue
        try:
            verb, ctx = parse(argv[1:])
        except Exception as e:  # a usage error: the message says which option
            raise AssertionError(f"{page.name}: `{line}`: {e}") from None
        n += 1
        if verb == "gen":
            written.add(dataset_written(ctx))
            continue
        for arg in argv[2:]:
            parts = Path(arg).parts
            if parts[:1] == ("datasets",) and len(parts) > 1:
                folder = "/".join(parts[:2])
                assert folder in written, f"{page.name}: `{line}`: no gen line writes {folder}"
        if verb == "train" and ctx.params.get("name"):
            trained.add(ctx.params["name"])
        if verb in ("predict", "export", "evaluate") and Path(argv[2]).parts[:1] == ("runs",):
            run = Path(argv[2]).parts[1]
            assert run in trained, f"{page.name}: `{line}`: no train line makes runs/{run}"
    return n


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_parse_and_name_the_paths_gen_writes(page):
    check_page_examples(page)


def test_every_verb_has_an_example():
    verbs = {parse(argv_of(ln)[1:])[0] for p in PAGES for ln in examples(p)
             if argv_of(ln)[:1] == ["countnet"]}  # fmt: skip
    assert verbs >= set(leaf_commands()), set(leaf_commands()) - verbs


def test_an_example_with_a_path_gen_does_not_write_fails(tmp_path):
    """Item 4: `countnet gen --range 1-5` writes datasets/count-1-5_r6_s224_n1000, so a
    line training on datasets/count-1-5 is caught."""
    page = tmp_path / "page.md"
    page.write_text(
        "```console\n$ countnet gen --range 1-5\n"
        "$ countnet train datasets/count-1-5_r6_s224_n1000 --name ok\n```\n"
    )
    assert check_page_examples(page) == 2
    page.write_text(page.read_text().replace("_r6_s224_n1000", ""))
    with pytest.raises(AssertionError, match="no gen line writes datasets/count-1-5"):
        check_page_examples(page)
    page.write_text("```console\n$ countnet train d --freeze-epoch 1\n```\n")
    with pytest.raises(AssertionError, match="No such option"):
        check_page_examples(page)


def test_help_examples_parse_and_name_the_paths_gen_writes():
    """The examples each verb's --help prints parse as the docs' do, and a dataset they
    name is one that an example of `countnet gen -h` writes (item 4)."""
    lines = {}
    for verb, cmd in leaf_commands().items():
        for ln in (cmd.epilog or "").splitlines():
            line = ln.strip().split("[dim]")[0]
            if line.startswith("countnet "):
                lines.setdefault(verb, []).append(argv_of(line))
    written = {dataset_written(parse(argv[1:])[1]) for argv in lines["gen"]}
    for verb, argvs in lines.items():
        for argv in argvs:
            parse(argv[1:])
            for arg in argv[2:]:
                parts = Path(arg).parts
                if verb != "gen" and parts[:1] == ("datasets",) and len(parts) > 1:
                    folder = "/".join(parts[:2])
                    assert folder in written, (
                        f"{verb} -h: {' '.join(argv)}: no gen example writes {folder}"
                    )


def test_other_lines_name_files_that_exist():
    for page in PAGES:
        for line in examples(page):
            for word in argv_of(line):
                if re.fullmatch(r"(bench|tests|config|profiles)/[\w./-]+", word):
                    assert (REPO / word).exists(), f"{page.name}: `{line}`: no {word}"


def snakemake_lines() -> list[list[str]]:
    found = []
    for page in PAGES:
        for line in examples(page):
            argv = argv_of(line)
            if argv[:1] == ["snakemake"]:
                args = argv[1:] if "-n" in argv else ["-n", *argv[1:]]
                if args not in found:
                    found.append(args)
    return found


def test_snakemake_examples_plan(tmp_path):
    """Each `snakemake` line of the manual, as a dry run from the repository root: the
    config, profile and targets it names exist and plan."""
    lines = snakemake_lines()
    assert len(lines) >= 2
    for args in lines:
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", *args],
            cwd=REPO, capture_output=True, text=True, timeout=600,
            env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
        assert proc.returncode == 0, (args, (proc.stdout + proc.stderr)[-3000:])
        assert "This was a dry-run" in proc.stdout + proc.stderr


def test_a_wrong_data_path_is_reported_first(tmp_path):
    """Item 4: with no ImageNet weights cached and no --no-pretrained, a DATA that does
    not exist is what `countnet train` reports, in one line, not the missing weights."""
    env = {"TORCH_HOME": str(tmp_path / "empty-torch-home"), "COUNTNET_OFFLINE": "1"}
    proc = run_countnet("train", "no/such/dir", cwd=tmp_path, env=env)
    assert_one_line_error(proc, "DATA no/such/dir does not exist")
    assert proc.returncode == 2 and written(tmp_path / "runs") == []
    (tmp_path / "a-file").write_text("not a folder")
    proc = run_countnet("train", "a-file", "--gpus", "2", "--device", "cpu", cwd=tmp_path, env=env)
    assert_one_line_error(proc, "DATA a-file is not a folder")


INLINE = re.compile(r"`countnet ([a-z][a-z-]*(?: [a-z][a-z-]*)?)((?: [^`]*)?)`")


def test_inline_commands_name_real_options():
    """`countnet VERB --option` in running text is an option VERB has: prose drifts as
    examples do (report.md once sent readers to an `evaluate --out` that never existed)."""
    cmds = leaf_commands()
    wrong = []
    for page in PAGES:
        for m in INLINE.finditer(page.read_text()):
            words = m.group(1).split()
            verb = " ".join(words[:2]) if " ".join(words[:2]) in cmds else words[0]
            if verb not in cmds:
                continue
            params = [p for p in cmds[verb].params if p.param_type_name == "option"]
            known = {o for p in params for o in [*p.opts, *p.secondary_opts]} | {"--help", "-h"}
            opts = re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", m.group(0))
            wrong += [f"{page.name}: {m.group(0)}" for o in opts if o not in known]
    assert not wrong, wrong
