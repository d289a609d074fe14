"""Finding Compose files, the project directory, the environment and the project name as docker compose does."""

from __future__ import annotations

import pytest

from netcore.compose.errors import ComposeError
from netcore.compose.files import ProjectOptions, normalize_project_name, project_name, resolve
from netcore.compose.loader import load

SERVICE = "services:\n  web: {}\n"


def write(path, text=SERVICE):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_default_names_in_order_then_parents_with_the_override(tmp_path):
    write(tmp_path / "docker-compose.yml")
    write(tmp_path / "compose.yml")
    write(tmp_path / "compose.override.yaml")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    source = resolve(ProjectOptions(), str(sub), {})
    assert [f.path for f in source.files] == [str(tmp_path / "compose.yml"), str(tmp_path / "compose.override.yaml")]
    assert source.working_dir == str(tmp_path)
    assert source.warnings == ("found several Compose files (compose.yml, docker-compose.yml): using compose.yml",)


def test_no_file_is_one_line(tmp_path):
    with pytest.raises(ComposeError, match=r"no Compose file found in .* give one with -f FILE"):
        resolve(ProjectOptions(), str(tmp_path), {})


def test_f_repeated_and_stdin_and_missing(tmp_path):
    write(tmp_path / "one.yaml")
    write(tmp_path / "x" / "two.yaml")
    source = resolve(ProjectOptions(files=("one.yaml", "x/two.yaml", "-")), str(tmp_path), {}, stdin=lambda: "a: 1\n")
    assert [f.display for f in source.files] == ["one.yaml", "x/two.yaml", "(stdin)"]
    assert source.files[2].text == "a: 1\n"
    with pytest.raises(ComposeError, match=r"Compose file nope\.yaml not found"):
        resolve(ProjectOptions(files=("nope.yaml",)), str(tmp_path), {})


def test_compose_file_variable_from_dotenv(tmp_path):
    write(tmp_path / "a.yaml")
    write(tmp_path / "b.yaml")
    write(tmp_path / ".env", "COMPOSE_FILE=a.yaml;b.yaml\nCOMPOSE_PATH_SEPARATOR=;\n")
    source = resolve(ProjectOptions(), str(tmp_path), {})
    assert [f.display for f in source.files] == ["a.yaml", "b.yaml"]


def test_environment_wins_over_env_files_and_later_env_files_over_earlier(tmp_path):
    write(tmp_path / "compose.yaml")
    write(tmp_path / "one.env", "A=one\nB=one\nC=one\n")
    write(tmp_path / "two.env", "B=two\nD=${B}\n")
    write(tmp_path / ".env", "E=dotenv\n")
    source = resolve(ProjectOptions(env_files=("one.env", "two.env")), str(tmp_path), {"A": "os"})
    env = source.environment
    assert (env["A"], env["B"], env["C"], env["D"]) == ("os", "two", "one", "two")
    assert "E" not in env  # --env-file replaces .env
    assert resolve(ProjectOptions(), str(tmp_path), {"E": "os"}).environment["E"] == "os"


def test_dotenv_of_the_project_directory(tmp_path):
    write(tmp_path / "proj" / "compose.yaml", "services:\n  web:\n    hostname: ${H}\n")
    write(tmp_path / "proj" / ".env", "H=from-project-dir\n")
    project = load(ProjectOptions(files=("proj/compose.yaml",)), str(tmp_path), {})
    assert project.service("web").hostname == "from-project-dir"
    assert project.working_dir == str(tmp_path / "proj")


@pytest.mark.parametrize(("raw", "normal"), [("My App", "myapp"), ("_x-Y.z", "x-yz"), ("--", ""), ("a_b-c", "a_b-c")])
def test_normalize_project_name(raw, normal):
    assert normalize_project_name(raw) == normal


def test_project_name_precedence(tmp_path):
    directory = tmp_path / "My.Dir"
    write(directory / "compose.yaml", "name: ${N:-From File}\n" + SERVICE)
    cwd = str(directory)
    assert load(ProjectOptions(), cwd, {}).name == "fromfile"  # name: interpolated, then normalised
    assert load(ProjectOptions(project_name="cli"), cwd, {"COMPOSE_PROJECT_NAME": "env"}).name == "cli"
    assert load(ProjectOptions(), cwd, {"COMPOSE_PROJECT_NAME": "env"}).name == "env"
    write(directory / "compose.yaml", SERVICE)
    assert load(ProjectOptions(), cwd, {}).name == "mydir"
    assert project_name(None, None, "/x/Some_Dir") == "some_dir"
    with pytest.raises(ComposeError, match="invalid project name 'Bad Name' \\(-p\\)"):
        load(ProjectOptions(project_name="Bad Name"), cwd, {})
    with pytest.raises(ComposeError, match="COMPOSE_PROJECT_NAME"):
        load(ProjectOptions(), cwd, {"COMPOSE_PROJECT_NAME": "UPPER"})


def test_the_project_name_is_interpolated_as_compose_project_name(tmp_path):
    write(tmp_path / "p" / "compose.yaml", "services:\n  web:\n    hostname: ${COMPOSE_PROJECT_NAME}-web\n")
    assert load(ProjectOptions(), str(tmp_path / "p"), {}).service("web").hostname == "p-web"


def test_extends_in_the_same_file_and_another(tmp_path):
    write(tmp_path / "base.yaml", "services:\n  common:\n    dns: [1.1.1.1]\n    ports: ['80:80']\n")
    write(tmp_path / "compose.yaml", "services:\n  web:\n    extends: {file: base.yaml, service: common}\n"
                                     "    ports: ['81:81']\n  api:\n    extends: web\n    hostname: api\n")
    project = load(ProjectOptions(), str(tmp_path), {})
    web, api = project.service("web"), project.service("api")
    assert web.dns == api.dns == ("1.1.1.1",)
    assert [p.container_ports for p in web.ports] == [(80, 80), (81, 81)]
    assert api.hostname == "api" and api.ports == web.ports
    write(tmp_path / "compose.yaml", "services:\n  a:\n    extends: b\n  b:\n    extends: a\n")
    with pytest.raises(ComposeError, match="extends makes a cycle"):
        load(ProjectOptions(), str(tmp_path), {})
