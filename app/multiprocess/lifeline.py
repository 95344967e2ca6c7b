"""The supervisor's children (the model process and the fronts) end when it dies,
however it dies. A SIGKILL or the OOM killer runs no handler in the supervisor, so it
cannot stop them; before this the fronts kept the port and a restart failed with
"address in use" (issue 27). uvicorn's own workers do not watch their parent either.

On Linux each child asks the kernel for a SIGTERM when its parent dies
(prctl PR_SET_PDEATHSIG), and so drains and exits as on any SIGTERM: a front closes
its listening socket first. The parent may have died before the child asks: the child
then finds that its parent is no longer the supervisor, and sends itself the SIGTERM.
Other systems have no such call; there the children outlive a killed supervisor.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger("cifar10.supervisor")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_supervisor(supervisor_pid: int | None) -> None:
    """In a child of the supervisor (`supervisor_pid`, CIFAR10_SUPERVISOR_PID): receive
    SIGTERM when it dies. Nothing happens without a supervisor, or off Linux."""
    if supervisor_pid is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning(
            "prctl(PR_SET_PDEATHSIG) failed (errno %d): this process may outlive the supervisor", ctypes.get_errno()
        )
        return
    if os.getppid() != supervisor_pid:  # it died before we asked
        log.error("the supervisor (pid %d) is gone; stopping", supervisor_pid)
        os.kill(os.getpid(), signal.SIGTERM)
