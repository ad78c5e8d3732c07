"""Drive `airlock serve` through the official OpenSandbox SDKs, and only their public API.

Run by crates/cli/tests/compat_opensandbox_sdk.rs with OPEN_SANDBOX_DOMAIN pointing at the
server's `/opensandbox` prefix. Every step asserts what the SDK returns; the first failure ends
the run with a traceback and a non-zero exit.
"""

import asyncio
import os
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone

from code_interpreter import CodeInterpreter, SupportedLanguage
from opensandbox import Sandbox, SandboxManager
from opensandbox.config import ConnectionConfig
from opensandbox.models.execd import ExecutionHandlers, RunCommandOpts
from opensandbox.models.filesystem import MoveEntry, WriteEntry
from opensandbox.models.sandboxes import NetworkPolicy, NetworkRule, SandboxFilter


def step(name):
    print(f"--- {name}", flush=True)


def config():
    return ConnectionConfig(
        domain=os.environ["OPEN_SANDBOX_DOMAIN"],
        api_key=os.environ.get("OPEN_SANDBOX_API_KEY"),
        request_timeout=timedelta(seconds=60),
    )


async def commands(sandbox):
    step("a foreground command")
    run = await sandbox.commands.run("echo hello; echo oops >&2; exit 3")
    assert [m.text for m in run.logs.stdout] == ["hello"], run.logs
    assert [m.text for m in run.logs.stderr] == ["oops"], run.logs
    assert run.exit_code == 3, run.exit_code

    step("a streamed command")
    seen = []

    async def on_stdout(message):
        seen.append(message.text)

    handlers = ExecutionHandlers(on_stdout=on_stdout)
    run = await sandbox.commands.run(
        "for i in 1 2 3; do echo line$i; sleep 0.1; done", handlers=handlers
    )
    assert seen == ["line1", "line2", "line3"], seen
    assert run.exit_code == 0

    step("a command with its own directory, variables and timeout")
    run = await sandbox.commands.run(
        "pwd; echo $GREETING",
        opts=RunCommandOpts(working_directory="/tmp", envs={"GREETING": "hi"}),
    )
    assert [m.text for m in run.logs.stdout] == ["/tmp", "hi"], run.logs
    run = await sandbox.commands.run("sleep 30", opts=RunCommandOpts(timeout=timedelta(seconds=1)))
    assert run.exit_code != 0 or run.error is not None, run

    step("a background command: status and logs")
    run = await sandbox.commands.run(
        "echo started; sleep 1; echo finished", opts=RunCommandOpts(background=True)
    )
    assert run.id, run
    status = await sandbox.commands.get_command_status(run.id)
    assert status.id == run.id, status
    for _ in range(100):
        status = await sandbox.commands.get_command_status(run.id)
        if not status.running:
            break
        await asyncio.sleep(0.1)
    assert status.running is False and status.exit_code == 0, status
    logs = await sandbox.commands.get_background_command_logs(run.id)
    assert "started" in logs.content and "finished" in logs.content, logs

    step("interrupting a background command")
    run = await sandbox.commands.run("sleep 300", opts=RunCommandOpts(background=True))
    await sandbox.commands.interrupt(run.id)
    for _ in range(100):
        status = await sandbox.commands.get_command_status(run.id)
        if not status.running:
            break
        await asyncio.sleep(0.1)
    assert status.running is False, status


async def files(sandbox):
    step("writing, reading and listing files")
    await sandbox.files.write_file("/workspace/notes/a.txt", "first\n")
    assert await sandbox.files.read_file("/workspace/notes/a.txt") == "first\n"
    await sandbox.files.write_files(
        [WriteEntry(path="/workspace/notes/b.bin", data=b"\x00\x01binary")]
    )
    assert await sandbox.files.read_bytes("/workspace/notes/b.bin") == b"\x00\x01binary"
    info = await sandbox.files.get_file_info(["/workspace/notes/a.txt"])
    assert info["/workspace/notes/a.txt"].size == 6, info

    step("moving and deleting files, and a directory")
    await sandbox.files.move_files(
        [MoveEntry(src="/workspace/notes/a.txt", dest="/workspace/notes/c.txt")]
    )
    assert await sandbox.files.read_file("/workspace/notes/c.txt") == "first\n"
    run = await sandbox.commands.run("ls /workspace/notes")
    assert sorted(m.text for m in run.logs.stdout) == ["b.bin", "c.txt"], run.logs
    await sandbox.files.delete_files(["/workspace/notes/b.bin"])
    await sandbox.files.create_directories([WriteEntry(path="/workspace/made/deep")])
    run = await sandbox.commands.run("test -d /workspace/made/deep && ls /workspace/notes")
    assert [m.text for m in run.logs.stdout] == ["c.txt"], run.logs

    step("a file the sandbox wrote is read back")
    await sandbox.commands.run("python3 -c \"open('/workspace/out.txt','w').write('from python')\"")
    assert await sandbox.files.read_file("/workspace/out.txt") == "from python"


async def code(sandbox):
    step("python in a context keeps its state")
    interpreter = await CodeInterpreter.create(sandbox)
    context = await interpreter.codes.create_context(SupportedLanguage.PYTHON)
    first = await interpreter.codes.run("x = 41\nprint('set')", context=context)
    # As from a Jupyter kernel: stream text keeps its newlines.
    assert "".join(m.text for m in first.logs.stdout) == "set\n", first.logs
    second = await interpreter.codes.run("x + 1", context=context)
    assert second.result and second.result[0].text == "42", second
    failed = await interpreter.codes.run("1 / 0", context=context)
    assert failed.error is not None and failed.error.name == "ZeroDivisionError", failed.error
    other = await interpreter.codes.create_context(SupportedLanguage.PYTHON)
    fresh = await interpreter.codes.run("'x' in globals()", context=other)
    assert fresh.result[0].text == "False", fresh


async def egress(sandbox):
    step("egress policy: read, patch, delete")
    policy = await sandbox.get_egress_policy()
    assert policy.default_action == "deny", policy
    assert [(r.action, r.target) for r in policy.egress or []] == [("allow", "pypi.org")], policy
    await sandbox.patch_egress_rules([NetworkRule(action="allow", target="*.example.com")])
    policy = await sandbox.get_egress_policy()
    targets = [r.target for r in policy.egress or []]
    assert targets == ["*.example.com", "pypi.org"], targets
    await sandbox.delete_egress_rules(["pypi.org"])
    policy = await sandbox.get_egress_policy()
    assert [r.target for r in policy.egress or []] == ["*.example.com"], policy
    run = await sandbox.commands.run("echo $HTTPS_PROXY")
    assert run.logs.stdout[0].text.startswith("http://127.0.0.1:"), run.logs


async def ingress(sandbox):
    step("a signed endpoint reaches a port without the API key")
    await sandbox.files.write_file("/workspace/site/page.txt", "served")
    await sandbox.commands.run(
        "exec python3 -m http.server 8000 --bind 127.0.0.1 --directory /workspace/site",
        opts=RunCommandOpts(background=True),
    )
    endpoint = await sandbox.get_signed_endpoint(8000, int(time.time()) + 600)
    assert endpoint.headers in (None, {}), endpoint
    url = f"http://{endpoint.endpoint}/page.txt"
    for _ in range(100):
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                assert answer.read() == b"served", url
                break
        except urllib.error.HTTPError as e:
            assert e.code == 503, (url, e.code, e.read())
            await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{url} never answered")


async def lifecycle(sandbox, manager):
    step("info, metadata and listing")
    info = await sandbox.get_info()
    assert info.status.state == "Running", info.status
    assert "default" in (info.status.message or ""), info.status
    assert info.metadata.get("suite") == "sdk", info.metadata
    page = await manager.list_sandbox_infos(SandboxFilter(states=["Running"], metadata={"suite": "sdk"}))
    assert sandbox.id in [s.id for s in page.sandbox_infos], page

    step("renewing the expiry")
    before = info.expires_at
    renewed = await sandbox.renew(timedelta(hours=2))
    assert renewed.expires_at > before + timedelta(minutes=30), (before, renewed.expires_at)

    step("pause keeps the files; resume gives a working sandbox")
    await sandbox.files.write_file("/workspace/kept.txt", "kept")
    await sandbox.pause()
    info = await sandbox.get_info()
    assert info.status.state == "Paused", info.status
    resumed = await Sandbox.resume(sandbox.id, connection_config=config())
    assert await resumed.files.read_file("/workspace/kept.txt") == "kept"
    run = await resumed.commands.run("echo back")
    assert run.logs.stdout[0].text == "back", run.logs
    return resumed


async def main():
    manager = await SandboxManager.create(connection_config=config())
    sandbox = await Sandbox.create(
        "python:3.11",
        timeout=timedelta(minutes=10),
        env={"SUITE": "sdk"},
        metadata={"suite": "sdk"},
        resource={"cpu": "1", "memory": "512Mi"},
        network_policy=NetworkPolicy(
            default_action="deny", egress=[NetworkRule(action="allow", target="pypi.org")]
        ),
        connection_config=config(),
    )
    try:
        step("the sandbox answers")
        assert await sandbox.is_healthy()
        run = await sandbox.commands.run("echo $SUITE; id -u")
        assert [m.text for m in run.logs.stdout][0] == "sdk", run.logs
        await commands(sandbox)
        await files(sandbox)
        await code(sandbox)
        await egress(sandbox)
        await ingress(sandbox)
        sandbox = await lifecycle(sandbox, manager)
    finally:
        step("kill")
        await sandbox.kill()
        await sandbox.close()
    info = await manager.get_sandbox_info(sandbox.id)
    assert info.status.state in ("Stopping", "Terminated"), info.status
    await manager.close()
    print("all steps passed", flush=True)


if __name__ == "__main__":
    started = datetime.now(timezone.utc)
    asyncio.run(main())
    print(f"took {(datetime.now(timezone.utc) - started).total_seconds():.1f}s", file=sys.stderr)
