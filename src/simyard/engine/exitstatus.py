"""How a sandboxed model really ended: an exit code or a signal, never confused.

bubblewrap reports a model killed by signal N as exit code 128+N, and its
``--json-status-fd`` says the same (``{"exit-code": 137}`` for an exit(137) and for a
SIGKILL alike; bubblewrap 0.8). Real programs exit above 128 (every CalculiX ``*ERROR``
exits 201), so the code alone cannot tell. Inside the sandbox a tiny reporter therefore
starts the model as its child, waits for it, and writes ``exit N`` or ``signal N`` to a
pipe the engine reads, with the CPU seconds the model's tree used (its children's times:
whatever the model reaped counts with it); it then exits as bubblewrap would have.

The reporter is Perl where the system has it (Essential on Debian, ~5 ms, ~5 MB) and the
engine's own Python otherwise (both are visible in the sandbox). It outlives a SIGTERM
of its tree (the model gets its own) so a stopped model's end is still told; a reporter
killed outright reports nothing and the engine falls back to reading 128+N as a signal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from dataclasses import dataclass

_PERL = r"""
my $fd = shift @ARGV;
open(my $status, ">&=", $fd) or die "simyard: no status pipe: $!\n";
$SIG{$_} = sub {} for qw(TERM INT HUP QUIT USR1 USR2 ALRM PIPE);
my $pid = fork();
defined $pid or die "simyard: cannot fork: $!\n";
if ($pid == 0) {
    close $status;
    $SIG{$_} = "DEFAULT" for qw(TERM INT HUP QUIT USR1 USR2 ALRM PIPE);
    exec { $ARGV[0] } @ARGV;
    print STDERR "simyard: cannot start $ARGV[0]: $!\n";
    exit 127;
}
1 while waitpid($pid, 0) == -1 && $! == 4;  # EINTR, without loading Errno (~4 ms)
my $st = $?;
my (undef, undef, $cuser, $csystem) = times;
print $status (($st & 127) ? "signal " . ($st & 127) : "exit " . ($st >> 8)), " ",
    $cuser + $csystem;
close $status;
exit(($st & 127) ? 128 + ($st & 127) : $st >> 8);
"""

_PYTHON = r"""
import os, signal, sys
fd, argv = int(sys.argv[1]), sys.argv[2:]
caught = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
          signal.SIGUSR2, signal.SIGALRM)
for s in caught:
    signal.signal(s, lambda *a: None)
try:
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_CLOSE, fd)],
                          setsigdef=(*caught, signal.SIGPIPE, signal.SIGXFSZ))
except OSError as exc:
    print(f"simyard: cannot start {argv[0]}: {exc.strerror}", file=sys.stderr)
    sys.exit(127)
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
used = os.times()
cpu = used.children_user + used.children_system
os.write(fd, (f"signal {-code}" if code < 0 else f"exit {code}").encode() + f" {cpu}".encode())
sys.exit(128 - code if code < 0 else code)
"""


def reporter_argv(fd: int) -> list[str]:
    """The command prefix that runs the rest of the line and reports its end to ``fd``."""
    perl = shutil.which("perl", path="/usr/bin:/bin")
    if perl is not None:
        return [perl, "-e", _PERL, str(fd)]
    return [sys.executable, "-I", "-S", "-c", _PYTHON, str(fd)]


@dataclass(frozen=True)
class ExitStatus:
    """A process's end: ``code`` when it exited, ``signal`` when a signal killed it."""

    code: int | None
    signal: int | None
    cpu_seconds: float | None = None  # what the model's tree used, as the reporter saw it


def read_status(fd: int) -> ExitStatus | None:
    """What the reporter wrote to the pipe's read end ``fd`` (closed here); None if nothing."""
    with contextlib.suppress(OSError):
        os.set_blocking(fd, False)
    try:
        text = os.read(fd, 64).decode("ascii", errors="replace")
    except OSError:
        text = ""
    finally:
        os.close(fd)
    word, number, cpu, *_ = [*text.split(), "", "", ""]
    if not number.isdigit():
        return None
    try:
        used: float | None = float(cpu)
    except ValueError:
        used = None
    if word == "exit":
        return ExitStatus(int(number), None, used)
    if word == "signal":
        return ExitStatus(None, int(number), used)
    return None
