"""Facts about the running process that cartlab reports (worker memory in batched analyses)."""

from __future__ import annotations

import sys


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes (its own, not inherited at fork)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # kilobytes on Linux, bytes on macOS
