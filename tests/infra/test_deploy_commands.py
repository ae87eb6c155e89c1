"""Every cloud CLI command that docs/deploy-*.md tells an operator to run is one that CLI has,
checked offline, with the CLI's own code wherever it runs here.

The commands are read from the docs' ```sh blocks (continuations joined, pipes, `&&`, `;` and
`$(...)` split into their commands) and from inline `code` that starts with a CLI's name and has
a subcommand. Then, per CLI:

- terraform (the binary on PATH): `terraform SUBCOMMAND -help` succeeds and lists every option
  the doc passes;
- gcloud (the Google Cloud SDK on PATH): `gcloud GROUP ... COMMAND --help` names that command
  (not a group), and every `--flag` is in its help or among gcloud's global flags;
- az (azure-cli in .venv-azcli, `make docs-cli-env`): the command's `--help` succeeds, and every
  option is in its help (arguments and global arguments);
- sam (aws-sam-cli in .venv-samcli): `sam SUBCOMMAND --help` succeeds and lists every option;
- aws: the service and operation exist in botocore's API models (the models the AWS CLI builds
  its commands from) and every `--option` is a member of the operation's input (or its boolean
  `--no-` form), a paginated operation's CLI option, or one of the CLI's global options. AWS CLI
  v2 itself is not on PyPI: its global options and the customizations it adds beside the API
  (`aws logs tail`) are only checked by name, against the lists below, written from the AWS CLI
  v2 reference;
- the repository's own scripts (`infra/aws/check_parameters.py`): their argument parser accepts
  the arguments.

What none of this checks: that a command does what the doc says, option values, or anything
that needs an account.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = {cloud: ROOT / "docs" / f"deploy-{cloud}.md" for cloud in ("aws", "gcp", "azure")}
CLIS = ("aws", "gcloud", "az", "terraform", "sam")
PYTHON_SCRIPTS = {"infra/aws/check_parameters.py"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- reading the commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    doc: str
    tokens: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    @property
    def options(self) -> list[str]:
        """`--name` / `-n` options (without values); not placeholders such as `-` for stdin."""
        found = []
        for token in self.tokens[1:]:
            if re.match(r"^--?[A-Za-z]", token):
                found.append(token.split("=", 1)[0])
        return found

    def words(self) -> list[str]:
        """The tokens after the CLI's name up to the first option."""
        words = []
        for token in self.tokens[1:]:
            if token.startswith("-"):
                break
            words.append(token)
        return words


def _substitutions(text: str) -> tuple[str, list[str]]:
    """text with every $(...) replaced by SUBST, and the inner texts."""
    inner: list[str] = []
    out, i = [], 0
    while i < len(text):
        if text.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            body = text[i + 2 : j - 1]
            replaced, nested = _substitutions(body)
            inner += [replaced, *nested]
            out.append("SUBST")
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out), inner


def _split(text: str) -> list[list[str]]:
    """Shell-like: the commands of one logical line (|, ||, &&, ; separate them)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _commands_in(text: str) -> list[list[str]]:
    replaced, inner = _substitutions(text)
    found = []
    for part in [replaced, *inner]:
        for tokens in _split(part):
            while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
                tokens = tokens[1:]  # VAR=value before the command
            if tokens:
                found.append(tokens)
    return found


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, text) of every fenced block."""
    blocks: list[tuple[str, str]] = []
    current: list[str] | None = None
    language = ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if current is None:
                language, current = line.strip().strip("`").strip(), []
            else:
                blocks.append((language, "\n".join(current)))
                current = None
            continue
        if current is not None:
            current.append(line)
    return blocks


SHELL = ("sh", "bash", "shell")


def _logical_lines(block: str) -> list[str]:
    """Lines joined across backslash continuations and open quotes."""
    lines, pending = [], ""
    for line in block.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        lines.append(pending)
        pending = ""
    assert not pending, f"unterminated quote in: {pending!r}"
    return lines


@functools.cache
def doc_commands() -> tuple[Command, ...]:
    found: list[Command] = []
    for cloud, path in DOCS.items():
        text = path.read_text()
        for language, block in _fenced_blocks(text):
            if language in SHELL:
                for line in _logical_lines(block):
                    found += [Command(cloud, tuple(t)) for t in _commands_in(line)]
            else:
                found += [Command(cloud, tuple(t)) for t in _placeholder_commands(block)]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for snippet in re.findall(r"`([^`]+)`", prose):  # inline code may wrap a line
            for tokens in _commands_in(snippet.replace("\n", " ")):
                # `az` alone is a CLI named in a sentence; a subcommand makes it a command
                if tokens[0] in CLIS and len(tokens) >= 2:
                    found.append(Command(cloud, tuple(tokens)))
    return tuple(found)


def _placeholder_commands(block: str) -> list[list[str]]:
    """Commands quoted inside a placeholder of a non-shell block, as in the tfvars example's
    "<your object id: az ad signed-in-user show --query id -o tsv>"."""
    found = []
    clis = "|".join(CLIS)
    for inner in re.findall(rf"<[^<>:]*: ((?:{clis}) [^<>]+)>", block):
        found += _commands_in(inner)
    return found


def of(cli: str) -> list[Command]:
    return [c for c in doc_commands() if c.tokens[0] == cli]


def test_the_reader_finds_the_commands_of_every_cli() -> None:
    counts = {cli: len(of(cli)) for cli in CLIS}
    assert all(counts.values()), counts
    texts = {c.text for c in doc_commands()}
    # a multi-line quoted argument; a $(...) inside a quoted argument; a pipeline's second
    # command; a command in inline code that wraps a line
    assert any(t.startswith("aws logs start-query") and "limit 50" in t for t in texts)
    assert (
        "aws cloudformation describe-stacks --stack-name esdb-relay-orders-migration --query "
        "Stacks[0].Outputs[?OutputKey=='ChainQueueUrl'].OutputValue --output text"
    ) in texts
    assert any(t.startswith("gcloud secrets versions add") for t in texts)
    assert any(t.startswith("az functionapp function keys list") for t in texts)
    assert any(t.startswith("aws lambda put-function-concurrency") for t in texts)
    assert "az ad signed-in-user show --query id -o tsv" in texts  # in the tfvars example


def test_the_reader_splits_shell_lines_as_a_shell_would() -> None:
    line = (
        'X=$(aws a b --c "$(gcloud d e --f=1)") && terraform -chdir=x output -raw y | cat; '
        "echo '# not a comment' # a comment"
    )
    assert _commands_in(line) == [
        ["terraform", "-chdir=x", "output", "-raw", "y"],
        ["cat"],
        ["echo", "# not a comment"],
        ["aws", "a", "b", "--c", "SUBST"],  # X=$(...): the substitution's commands
        ["gcloud", "d", "e", "--f=1"],
    ]
    assert _logical_lines("a \\\n  --b 'x\ny'\nc") == ["a    --b 'x\ny'", "c"]


# --- terraform --------------------------------------------------------------------------------


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, **env},
    )


@functools.cache
def terraform_help(subcommand: str) -> str | None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail("terraform is not on PATH")
    done = _run(
        [binary, subcommand, "-help"], CHECKPOINT_DISABLE="1", TF_CLI_CONFIG_FILE=os.devnull
    )
    if done.returncode != 0:
        return None
    text = done.stdout + done.stderr
    if subcommand != "plan" and "terraform plan -help" in text:  # apply, destroy: as it says
        text += terraform_help("plan") or ""
    return text


@pytest.mark.parametrize("command", of("terraform"), ids=lambda c: f"{c.doc}: {c.text[:60]}")
def test_terraform_commands_exist(command: Command) -> None:
    tokens = [t for t in command.tokens[1:] if not t.startswith("-chdir=")]
    subcommand = tokens[0]
    text = terraform_help(subcommand)
    assert text is not None, f"terraform has no subcommand {subcommand!r}: {command.text}"
    for option in [o for o in command.options if o != "-chdir"]:
        assert re.search(rf"(?m)^\s+{re.escape(option)}\b", text), (
            f"terraform {subcommand} has no option {option}: {command.text}"
        )


@pytest.mark.parametrize(
    "tokens",
    [
        ("terraform", "outptu"),
        ("terraform", "output", "-rawx"),
        ("terraform", "apply", "-targets=x"),
    ],
)
def test_the_terraform_check_refuses_what_is_not_there(tokens: tuple[str, ...]) -> None:
    with pytest.raises(AssertionError, match="terraform"):
        test_terraform_commands_exist(Command("test", tokens))


# --- gcloud -----------------------------------------------------------------------------------


def _gcloud(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("gcloud")
    if binary is None:
        pytest.fail("gcloud is not on PATH (the Google Cloud SDK also runs the emulators)")
    # Offline: no prompt, no check for newer components.
    return _run(
        [binary, *args],
        CLOUDSDK_CORE_DISABLE_PROMPTS="1",
        CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="1",
    )


@functools.cache
def gcloud_help(words: tuple[str, ...]) -> tuple[int, str]:
    done = _gcloud(*words, "--help")
    return done.returncode, ANSI.sub("", done.stdout + done.stderr)


@functools.cache
def gcloud_global_flags() -> set[str]:
    _, text = gcloud_help(())
    section = text.split("GLOBAL FLAGS", 1)[1].split("\nGROUPS", 1)[0]
    flags = set(re.findall(r"(?m)^\s+(--[a-z][a-z-]*)", section))
    assert {"--project", "--format"} <= flags, flags
    return flags


def _flag_in(flag: str, text: str) -> bool:
    if re.search(rf"{re.escape(flag)}\b", text):
        return True
    bare = flag.removeprefix("--no-")
    return bare != flag.removeprefix("--") and f"--[no-]{bare}" in text


@pytest.mark.parametrize("command", of("gcloud"), ids=lambda c: f"{c.doc}: {c.text[:60]}")
def test_gcloud_commands_exist(command: Command) -> None:
    words = tuple(command.words())
    code, text = gcloud_help(words)
    assert code == 0, f"gcloud refused {command.text}:\n{text[-600:]}"
    named = re.search(r"NAME\n\s+gcloud ([a-z0-9 -]+?) - ", text)
    assert named, text[:300]
    path = named.group(1).split()
    assert list(words[: len(path)]) == path, f"{command.text}: help is for {path}"
    assert "\nCOMMANDS\n" not in text and "\nGROUPS\n" not in text, (
        f"gcloud {' '.join(path)} is a group, not a command: {command.text}"
    )
    for flag in command.options:
        assert _flag_in(flag, text) or flag in gcloud_global_flags(), (
            f"gcloud {' '.join(path)} has no flag {flag}: {command.text}"
        )


@pytest.mark.parametrize(
    ("tokens", "says"),
    [
        (("gcloud", "functions", "callx", "fn"), "refused"),
        (("gcloud", "functions", "call", "fn", "--dat={}"), "no flag --dat"),
        (("gcloud", "scheduler", "jobs"), "is a group"),
    ],
)
def test_the_gcloud_check_refuses_what_is_not_there(tokens: tuple[str, ...], says: str) -> None:
    with pytest.raises(AssertionError, match=says):
        test_gcloud_commands_exist(Command("test", tokens))


# --- az ---------------------------------------------------------------------------------------

AZ = ROOT / ".venv-azcli" / "bin" / "python"
AZ_BATCH = """
import contextlib, io, json, os, sys
from azure.cli.core import get_default_cli
found = {}
for words in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = get_default_cli().invoke(words + ["--help"], out_file=out)
        except SystemExit as e:
            code = e.code
    found[" ".join(words)] = [code, out.getvalue(), err.getvalue()]
json.dump(found, sys.stdout)
"""


@pytest.fixture(scope="module")
def az_help(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    """`az WORDS --help` for every az command of the docs, in one process of azure-cli's own
    code (loading the command table takes seconds; each command's help is then quick)."""
    if not AZ.exists():
        pytest.fail(f"azure-cli is not installed at {AZ}: run `make docs-cli-env`")
    words = sorted({tuple(c.words()) for c in of("az")} | {w for w, _ in AZ_PROBES})
    done = subprocess.run(
        [str(AZ), "-c", AZ_BATCH],
        input=json.dumps([list(w) for w in words]),
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "AZURE_CORE_COLLECT_TELEMETRY": "no",
            "AZURE_CORE_SURVEY_MESSAGE": "no",
            "AZURE_CONFIG_DIR": str(tmp_path_factory.mktemp("az")),
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {k: (v[0], v[1] + v[2]) for k, v in json.loads(done.stdout).items()}


@pytest.mark.parametrize("command", of("az"), ids=lambda c: f"{c.doc}: {c.text[:60]}")
def test_az_commands_exist(command: Command, az_help: dict[str, tuple[int, str]]) -> None:
    code, text = az_help[" ".join(command.words())]
    assert code == 0, f"az refused {command.text}:\n{text[-600:]}"
    assert f"\nCommand\n    az {' '.join(command.words())} :" in text, (
        f"{command.text}: not a command (a group, or positional words)"
    )
    for option in command.options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
            f"az {' '.join(command.words())} has no option {option}"
        )


AZ_PROBES = [
    (("functionapp", "restartx"), "refused"),  # no such command
    (("functionapp",), "not a command"),  # a group
    (("functionapp", "stop"), "no option --nam"),  # with a misspelt option, below
]


@pytest.mark.parametrize(("words", "says"), AZ_PROBES)
def test_the_az_check_refuses_what_is_not_there(
    words: tuple[str, ...], says: str, az_help: dict[str, tuple[int, str]]
) -> None:
    tokens = ("az", *words, "--nam", "x")
    with pytest.raises(AssertionError, match=says):
        test_az_commands_exist(Command("test", tokens), az_help)


# --- sam --------------------------------------------------------------------------------------

SAM = ROOT / ".venv-samcli" / "bin" / "sam"


@functools.cache
def sam_help(subcommand: str) -> tuple[int, str]:
    if not SAM.exists():
        pytest.fail(f"aws-sam-cli is not installed at {SAM}: run `make docs-cli-env`")
    done = _run([str(SAM), subcommand, "--help"], SAM_CLI_TELEMETRY="0")
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("command", of("sam"), ids=lambda c: f"{c.doc}: {c.text[:60]}")
def test_sam_commands_exist(command: Command) -> None:
    code, text = sam_help(command.tokens[1])
    assert code == 0, f"sam refused {command.text}:\n{text[-600:]}"
    for option in command.options:
        assert re.search(rf"{re.escape(option)}\b", text), f"sam has no option {option}"


@pytest.mark.parametrize(
    ("tokens", "says"),
    [(("sam", "deployy"), "refused"), (("sam", "deploy", "--guide"), "no option --guide")],
)
def test_the_sam_check_refuses_what_is_not_there(tokens: tuple[str, ...], says: str) -> None:
    with pytest.raises(AssertionError, match=says):
        test_sam_commands_exist(Command("test", tokens))


# --- aws --------------------------------------------------------------------------------------

# The AWS CLI v2's global options (`aws help`, "GLOBAL OPTIONS"): checked by name only.
AWS_GLOBAL_OPTIONS = {
    "--debug",
    "--endpoint-url",
    "--no-verify-ssl",
    "--no-paginate",
    "--output",
    "--query",
    "--profile",
    "--region",
    "--version",
    "--color",
    "--no-sign-request",
    "--ca-bundle",
    "--cli-read-timeout",
    "--cli-connect-timeout",
    "--cli-binary-format",
    "--no-cli-pager",
    "--cli-auto-prompt",
    "--no-cli-auto-prompt",
}
# Options the CLI adds to every paginated operation, and to every operation.
AWS_PAGINATION_OPTIONS = {"--starting-token", "--page-size", "--max-items"}
AWS_OPERATION_OPTIONS = {"--cli-input-json", "--cli-input-yaml", "--generate-cli-skeleton"}
# AWS CLI v2 commands that are no API operation (customizations): checked by name only, with
# their options, from the AWS CLI v2 reference.
AWS_CUSTOMIZATIONS = {
    ("logs", "tail"): {
        "--follow",
        "--since",
        "--format",
        "--filter-pattern",
        "--log-stream-names",
        "--log-stream-name-prefix",
    },
}


@functools.cache
def aws_service(name: str) -> object:
    import botocore.session

    session = botocore.session.get_session()
    assert name in session.get_available_services(), f"botocore has no service {name!r}"
    return session.get_service_model(name)


@pytest.mark.parametrize("command", of("aws"), ids=lambda c: f"{c.doc}: {c.text[:60]}")
def test_aws_commands_exist(command: Command) -> None:
    from botocore import xform_name

    service_name, operation_cli = command.tokens[1], command.tokens[2]
    options = set(command.options)
    if (service_name, operation_cli) in AWS_CUSTOMIZATIONS:
        allowed = AWS_CUSTOMIZATIONS[(service_name, operation_cli)] | AWS_GLOBAL_OPTIONS
        assert options <= allowed, sorted(options - allowed)
        return
    service = aws_service(service_name)
    operations = {xform_name(name, "-"): name for name in service.operation_names}  # type: ignore[attr-defined]
    assert operation_cli in operations, f"aws {service_name} has no operation {operation_cli}"
    operation = service.operation_model(operations[operation_cli])  # type: ignore[attr-defined]
    members = operation.input_shape.members if operation.input_shape else {}
    allowed = {f"--{xform_name(m, '-')}" for m in members}
    allowed |= {
        f"--no-{xform_name(m, '-')}" for m, shape in members.items() if shape.type_name == "boolean"
    }
    allowed |= AWS_GLOBAL_OPTIONS | AWS_OPERATION_OPTIONS | AWS_PAGINATION_OPTIONS
    assert options <= allowed, f"aws {service_name} {operation_cli}: {sorted(options - allowed)}"


def test_the_aws_check_refuses_what_is_not_there() -> None:
    """The check above can fail: a misspelt operation, an option the operation lacks."""
    with pytest.raises(AssertionError, match="no operation"):
        test_aws_commands_exist(Command("aws", ("aws", "ec2", "describe-subnet")))
    with pytest.raises(AssertionError, match="--subnet-id"):
        test_aws_commands_exist(Command("aws", ("aws", "ec2", "describe-subnets", "--subnet-id")))
    test_aws_commands_exist(
        Command("aws", ("aws", "dynamodb", "update-table", "--no-deletion-protection-enabled"))
    )


# --- the repository's own scripts -------------------------------------------------------------


@functools.cache
def script(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repository_scripts_accept_the_arguments_the_docs_pass() -> None:
    runs = [
        c.tokens[2:]
        for c in doc_commands()
        if len(c.tokens) > 1 and c.tokens[0].endswith("python") and c.tokens[1] in PYTHON_SCRIPTS
    ]
    assert runs, "the docs run no repository script"
    parser = script("infra/aws/check_parameters.py").arguments()
    for args in runs:
        parsed = parser.parse_args(list(args))  # SystemExit on an unknown argument
        assert str(parsed.samconfig).endswith("samconfig.toml")
    assert any("--config-env" in args for args in runs)
