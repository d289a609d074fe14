"""Containers' main processes without root (issue 28, item 2): the engine records and starts them through a
supervisor (an in-memory one here), `rm` refuses a running container, `rm -f` stops every process of its
namespace first, exits are recorded when the next command looks, a restarted agent finds them or marks them
exited; and how `ps` and `inspect` word it."""

from __future__ import annotations

import io
from argparse import Namespace

import pytest

from netcore.cli import commands, views
from netcore.errors import Conflict, NetcoreError
from netcore.model import EXIT_UNKNOWN, PROCESS_CREATED, PROCESS_EXITED, PROCESS_RUNNING, Container, MainProcess
from netcore.requests import ContainerSpec
from tests.support.fake_kernel import new_world

world = pytest.fixture(new_world)


def run(engine, name, command=("server",), net=None):
    return engine.run(ContainerSpec.from_flags(name, net, command=command))


def test_run_with_a_command_records_and_starts_its_main_process(world):
    engine = world.engine()
    container = run(engine, "web")
    process = engine.store.process(container.id)
    assert (process.status, process.argv, process.boot_id) == (PROCESS_RUNNING, ("server",), "boot-1")
    assert world.processes.procs[process.pid]["netns"] == container.netns
    assert engine.store.process(run(engine, "plain", command=()).id) is None  # a sandbox has none


def test_a_program_that_cannot_start_leaves_the_container_created_with_its_reason(world):
    engine = world.engine()
    with pytest.raises(NetcoreError) as failed:
        run(engine, "web", ("missing",))
    assert failed.value.exit_code == 127
    container = engine.store.container("web")  # kept, as Docker keeps it
    process = engine.store.process(container.id)
    assert (process.status, process.exit_code) == (PROCESS_CREATED, 127) and "not found" in process.error


def test_rm_refuses_a_running_container_and_rm_f_stops_every_process_of_its_namespace(world):
    engine = world.engine()
    container = run(engine, "web")
    pid = engine.store.process(container.id).pid
    stray = world.processes.exec_in(container.netns)
    with pytest.raises(Conflict, match=r"cannot remove container web: it is running \(its main process server, pid"):
        engine.remove_containers(["web"])
    assert engine.store.find_container("web") is not None
    world.processes.ignore_term.add(stray)  # only SIGKILL, after the grace period, ends it
    assert [c.name for c in engine.remove_containers(["web"], force=True, grace=3)] == ["web"]
    assert world.processes.procs[pid]["code"] == 143 and world.processes.procs[stray]["code"] == 137
    assert world.processes.graces[0] == 3 and world.processes.forgotten == [container.id]
    assert engine.store.processes() == []


def test_a_stray_process_alone_does_not_keep_a_container_running_and_goes_with_it(world):
    engine = world.engine()
    container = run(engine, "plain", command=())
    stray = world.processes.exec_in(container.netns)
    assert [c.name for c in engine.remove_containers(["plain"])] == ["plain"]
    assert world.processes.procs[stray]["code"] is not None  # ended with the namespace: nothing left behind


def test_a_container_sharing_a_namespace_keeps_its_own_process_when_the_owner_is_stopped(world):
    engine = world.engine()
    owner = run(engine, "owner")
    side = run(engine, "side", net="container:owner")
    side_pid = engine.store.process(side.id).pid
    engine.stop(["owner"])
    assert world.processes.procs[side_pid]["code"] is None
    assert engine.store.process(owner.id).status == PROCESS_EXITED


def test_stop_start_restart_and_the_exit_recorded_at_the_next_command(world):
    engine = world.engine()
    container = run(engine, "web")
    first = engine.store.process(container.id).pid
    engine.stop(["web"], 5)
    stopped = engine.store.process(container.id)
    assert (stopped.status, stopped.exit_code, stopped.finished != "") == (PROCESS_EXITED, 143, True)
    engine.start(["web"])
    second = engine.store.process(container.id)
    assert second.status == PROCESS_RUNNING and second.pid != first
    engine.restart(["web"], 1)
    third = engine.store.process(container.id).pid
    world.processes.exit(third, 3)
    engine.begin_request()  # the next command records it
    assert (engine.store.process(container.id).status, engine.store.process(container.id).exit_code) == (
        PROCESS_EXITED, 3)
    with pytest.raises(NetcoreError, match="has no main process"):
        engine.start([run(engine, "plain", command=()).name])


def test_a_new_agent_finds_running_processes_again_or_marks_them_exited(world):
    engine = world.engine()
    alive, ended = run(engine, "alive"), run(engine, "ended")
    world.processes.forget_children()  # a new netcored: no one's parent
    world.processes.exit(engine.store.process(ended.id).pid, 0)
    later = world.engine()
    later.begin_request()
    assert later.store.process(alive.id).status == PROCESS_RUNNING
    gone = later.store.process(ended.id)
    assert (gone.status, gone.exit_code) == (PROCESS_EXITED, EXIT_UNKNOWN) and "unknown" in gone.error
    world.clock.boot = "boot-2"  # a reboot: nothing of the last boot runs
    later.begin_request()
    assert later.store.process(alive.id).exit_code == EXIT_UNKNOWN and "restarted" in \
        later.store.process(alive.id).error


def test_purge_stops_the_processes_first(world):
    engine = world.engine()
    pid = engine.store.process(run(engine, "web").id).pid
    engine.purge()
    assert world.processes.procs[pid]["code"] == 143


def test_ps_and_inspect_word_it_as_docker(world):
    engine = world.engine()
    run(engine, "web")
    run(engine, "plain", command=())
    failed = Container("f" * 64, "failed", "h", "ns")
    out = io.StringIO()
    commands.ps(engine, Namespace(quiet=False, all=False, filter=[], format="{{.Names}} {{.State}}"), out)
    assert out.getvalue().split("\n")[:2] == ["web running", "plain running"]
    engine.stop(["web"])
    out = io.StringIO()
    commands.ps(engine, Namespace(quiet=False, all=False, filter=[], format="{{.Names}}"), out)
    assert out.getvalue().split() == ["plain"]  # ps shows what runs; -a the rest
    out = io.StringIO()
    commands.ps(engine, Namespace(quiet=False, all=True, filter=["status=exited"], format="{{.Names}} {{.Status}}"),
                out)
    assert out.getvalue().startswith("web Exited (143) ")
    out = io.StringIO()
    commands.inspect(engine, Namespace(names=["web"], format="{{.State.Status}} {{.State.ExitCode}} {{.Path}}"), out)
    assert out.getvalue() == "exited 143 server\n"
    assert views.status(failed, False, MainProcess(failed.id, ("x",), PROCESS_CREATED), "") == "Created"


@pytest.mark.parametrize(("seconds", "text"), [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (150, "2 minutes"), (3600, "About an hour"), (7200, "2 hours"), (3 * 86400, "3 days"), (15 * 86400, "2 weeks"),
    (70 * 86400, "2 months"), (800 * 86400, "2 years"),
])
def test_durations_as_docker_writes_them(seconds, text):
    assert views.human_duration(seconds) == text


def test_status_is_measured_from_the_process(world):
    process = MainProcess("a" * 64, ("x",), PROCESS_RUNNING, started="2026-01-01T00:00:00.000000Z")
    container = Container("a" * 64, "x", "h", "ns")
    assert views.status(container, False, process, "2026-01-01T00:05:00.000000Z") == "Up 5 minutes"
    ended = MainProcess("a" * 64, ("x",), PROCESS_EXITED, exit_code=0, finished="2026-01-01T00:00:00.000000Z")
    assert views.status(container, False, ended, "2026-01-01T00:00:30.000000Z") == "Exited (0) 30 seconds ago"
    assert views.status(container, False, None, "") == "Up"
