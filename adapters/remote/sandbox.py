"""Run a command the way a platform runs one: as a non-root user, without network, inputs read-only.

    plan = SandboxPlan(argv=[...], cwd=..., env={...}, readonly={src: dest}, expose=[...], writable=[...])
    rc = run(plan, isolation(network_off=True))

As root (the usual case on these machines) the command runs in its own mount and network
namespaces (`unshare --mount --net`): every input is a read-only bind mount, the user's
home is hidden behind an empty tmpfs except for the paths the command needs (the image
environment and its interpreter), and the command runs as the system user
`harness-sandbox` (created with `useradd --system` if missing). Not root: the command runs
as the current user, inputs are copies without write permission, and the network is cut with
an unprivileged user namespace where the kernel allows one. What could not be had is said,
in `Isolation.notes`, never silently skipped.

This file is also the entry point that runs inside the namespaces (`python -I sandbox.py
PLAN.json`): it sets up the mounts as root, drops to the user and execs the command. So it
imports nothing but the standard library.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

SANDBOX_USER = "harness-sandbox"
SETUP_FAILED = 125  # the exit status when the sandbox itself could not be set up (as Docker uses it)
HERE = Path(__file__).resolve()


@dataclasses.dataclass(frozen=True)
class Isolation:
    """How the command will run: which user, whether the network is cut, whether mounts are real."""

    uid: int
    gid: int
    user: str
    as_root: bool  # we are root: namespaces, bind mounts and a separate user
    network_off: bool
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        net = "no network" if self.network_off else "WITH network"
        how = "read-only bind mounts" if self.as_root else "read-only copies"
        return f"as {self.user} (uid {self.uid}), {net}, inputs as {how}"

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "uid": self.uid, "root_dropped": self.as_root, "network_off": self.network_off,
                "inputs": "read-only bind mounts" if self.as_root else "read-only copies",
                "notes": list(self.notes)}


def _works(argv: list[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    return proc.returncode == 0, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""


def sandbox_user(log: Callable[[str], None] = print) -> tuple[int, int] | None:
    """The uid and gid of the sandbox user, created as a system user (no home, no shell) if missing."""
    try:
        pw = pwd.getpwnam(SANDBOX_USER)
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        return None
    ok, why = _works(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                      "--shell", "/usr/sbin/nologin", "--comment", "mnist-harness preflight sandbox", SANDBOX_USER])
    if not ok:
        log(f"[sandbox] could not create the user {SANDBOX_USER}: {why}")
        return None
    log(f"[sandbox] created the system user {SANDBOX_USER} to run platform commands as non-root")
    pw = pwd.getpwnam(SANDBOX_USER)
    return pw.pw_uid, pw.pw_gid


def isolation(network_off: bool, log: Callable[[str], None] = print) -> Isolation:
    """The best isolation this machine allows; `notes` says what is missing and why."""
    notes = []
    if os.geteuid() == 0:
        ids = sandbox_user(log)
        ok, why = _works(["unshare", "--mount", "--net", "true"]) if shutil.which("unshare") else (False, "no unshare")
        if ids and ok:
            return Isolation(ids[0], ids[1], SANDBOX_USER, True, network_off)
        notes.append("no separate user and namespaces here (" + ("unshare: " + why if not ok else
                     f"no user {SANDBOX_USER}") + "): running as root, which writes through read-only files")
        return Isolation(0, 0, "root", False, False, tuple(notes))
    user = pwd.getpwuid(os.geteuid()).pw_name
    net_off = False
    if network_off:
        net_off, why = _works(["unshare", "--map-current-user", "--net", "true"]) if shutil.which("unshare") \
            else (False, "no unshare")
        if not net_off:
            notes.append(f"the network could not be cut (unshare --map-current-user --net: {why}); "
                         "the command runs with this machine's network")
    return Isolation(os.geteuid(), os.getegid(), user, False, net_off, tuple(notes))


@dataclasses.dataclass
class SandboxPlan:
    """What to run, where, and what it may see.

    `readonly` maps a host folder or file to where the command sees it (inside `root`);
    `expose` lists host paths the command must be able to read at their own path (the
    interpreter); `writable` are folders under `root` the command's user owns.
    """

    root: Path
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    readonly: dict[Path, Path] = dataclasses.field(default_factory=dict)
    expose: list[Path] = dataclasses.field(default_factory=list)
    writable: list[Path] = dataclasses.field(default_factory=list)
    log_file: Path | None = None  # stdout and stderr, merged; None: the command redirects its own


def make_root(parent: str | None = None, prefix: str = "harness-sandbox-") -> Path:
    """A fresh sandbox folder that another user can traverse (pytest's tmp folders are 0700)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    root.chmod(0o755)
    return root


def _traversable(path: Path, uid: int, gid: int) -> bool:
    st = path.stat()
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _masks(paths: list[Path], uid: int, gid: int) -> list[str]:
    """The outermost folders the user cannot traverse on the way to `paths`: each gets an empty tmpfs."""
    masks: list[str] = []
    for p in paths:
        for ancestor in [*reversed(p.parents), p][1:]:
            if any(ancestor == Path(m) or Path(m) in ancestor.parents for m in masks):
                break
            if not _traversable(ancestor, uid, gid):
                masks.append(str(ancestor))
                break
    return masks


def _check_reachable(plan: SandboxPlan, iso: Isolation) -> None:
    for ancestor in [*reversed(plan.root.parents), plan.root]:
        if not _traversable(ancestor, iso.uid, iso.gid):
            raise PermissionError(f"the sandbox folder {plan.root} is not reachable for {iso.user}: "
                                  f"{ancestor} is closed to it; choose a sandbox folder under /tmp")


def _readonly_copy(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    subprocess.run(["chmod", "-R", "a-w", str(dest)], check=True)


def prepare(plan: SandboxPlan, iso: Isolation) -> list[str]:
    """The argv that runs `plan` with `iso`'s isolation (the mounts happen inside it, as root)."""
    _check_reachable(plan, iso)
    for folder in plan.writable:
        folder.mkdir(parents=True, exist_ok=True)
        if iso.as_root:
            os.chown(folder, iso.uid, iso.gid)
    if not iso.as_root:  # no mounts: read-only copies where the command looks for its inputs
        for src, dest in plan.readonly.items():
            _readonly_copy(src, dest)
        entry = {"binds": [], "masks": [], "expose": [], "uid": None, "gid": None}
    else:
        for src, dest in plan.readonly.items():  # mount points
            if src.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.touch()
        expose = [p.resolve() for p in plan.expose]
        entry = {"binds": [[str(s.resolve()), str(d)] for s, d in plan.readonly.items()],
                 "masks": _masks(expose, iso.uid, iso.gid), "expose": [str(p) for p in expose],
                 "uid": iso.uid, "gid": iso.gid}
    entry.update(argv=plan.argv, cwd=str(plan.cwd), env=plan.env, stage=str(plan.root / ".stage"))
    plan_file = plan.root / ".sandbox-plan.json"
    plan_file.write_text(json.dumps(entry, indent=2))
    enter = [sys.executable, "-I", str(HERE), str(plan_file)]
    if iso.as_root:
        return ["unshare", "--mount", "--propagation", "private", *(["--net"] if iso.network_off else []), *enter]
    if iso.network_off:
        return ["unshare", "--map-current-user", "--net", *enter]
    return enter


def run(plan: SandboxPlan, iso: Isolation, echo: Callable[[str], None] | None = None) -> int:
    """Run the plan; the command's output goes to `plan.log_file` (and, line by line, to `echo`)."""
    argv = prepare(plan, iso)
    if plan.log_file is None:
        with subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True) as proc:
            try:
                return proc.wait()
            except BaseException:
                _kill_group(proc)
                raise
    with open(plan.log_file, "w", encoding="utf-8", errors="replace") as log, \
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, errors="replace", start_new_session=True) as proc:
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if echo:
                    echo(line.rstrip("\n"))
        except BaseException:  # Ctrl-C: the command and its children stop too (a kernel runs the harness
            _kill_group(proc)  # in a child process)
            raise
        return proc.wait()


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# --- Inside the namespaces ---------------------------------------------------------------

def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _mount_point(path: Path, is_dir: bool) -> None:
    if is_dir:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def _enter(plan_file: str) -> None:
    """Mounts (as root, inside the new namespaces), then the user's command in place of this process."""
    plan = json.loads(Path(plan_file).read_text())
    if plan["uid"] is not None:
        if shutil.which("ip"):  # a cut-off machine still has loopback, as a container does
            subprocess.run(["ip", "link", "set", "lo", "up"], stderr=subprocess.DEVNULL, check=False)
        for src, dest in plan["binds"]:  # first: a source may lie under a folder a mask covers
            _mount("--bind", src, dest)
            _mount("-o", "remount,bind,ro", dest)
        stage = Path(plan["stage"])
        staged = []
        for i, path in enumerate(plan["expose"]):  # bind them aside before the masks cover them
            target = stage / str(i)
            _mount_point(target, Path(path).is_dir())
            _mount("--bind", path, str(target))
            staged.append((target, path))
        for mask in plan["masks"]:
            _mount("-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", mask)
        for target, path in staged:
            _mount_point(Path(path), target.is_dir())
            _mount("--move", str(target), path)
            _mount("-o", "remount,bind,ro", path)
        os.setgroups([])
        os.setgid(plan["gid"])
        os.setuid(plan["uid"])
    os.chdir(plan["cwd"])
    os.execve(plan["argv"][0], plan["argv"], plan["env"])


if __name__ == "__main__":
    try:
        _enter(sys.argv[1])
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError) as e:
        print(f"[sandbox] setup failed: {e}", file=sys.stderr)
        sys.exit(SETUP_FAILED)
