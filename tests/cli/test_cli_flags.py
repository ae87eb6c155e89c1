"""The command's habits, on every command: `-h` as well as `--help`, `--version`, flags shown
as flags (no `<bool>` beside them: `--tls true` is not offered), `--apply` wherever a command
changes the target, `--yes` only to skip a question."""

from __future__ import annotations

import click
import typer
from typer.testing import CliRunner

from handlers.cli.main import app

runner = CliRunner()


def command_paths() -> list[list[str]]:
    paths: list[list[str]] = [[]]

    def walk(command: click.Command, path: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*path, name])
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def help_of(path: list[str]) -> str:
    result = runner.invoke(app, [*path, "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, (path, result.output)
    assert "Usage:" in result.output
    return result.output


def test_every_command_answers_h_and_shows_flags_without_a_type():
    paths = command_paths()
    assert ["projections", "create"] in paths and ["emulator"] in paths
    for path in paths:
        text = help_of(path)
        assert "<bool>" not in text and "BOOLEAN" not in text, (path, text)


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("esdb-relay ") and "esdbclient" in result.output


def test_switches_read_as_switches():
    assert "--tls / --no-tls" in help_of(["emulator"])
    assert runner.invoke(app, ["emulator", "--tls", "true"]).exit_code == 2  # not a value


def test_apply_applies_and_yes_only_skips_the_question():
    for path in (["migrate-subscriptions"], ["projections", "create"], ["cutover"]):
        assert "--apply " in help_of(path), path
    cutover = help_of(["cutover"])
    assert "--apply-subscriptions" not in cutover and "--yes" in cutover
    assert "--yes" not in help_of(["projections", "create"])
