#!/usr/bin/env python3
"""Where a benchmark's CPU goes, from /proc: per process role (inetsrv's
listener, its worker, the PHP processes; nginx, php-fpm), the user and
system CPU and the context switches per request over one load run.

  proc_cpu.py snapshot ROOT_PID...        > FILE   (every process under the roots)
  proc_cpu.py report LABEL BEFORE AFTER REQUESTS

Used by bench/lib.sh's cpu_per_request. Kernel time is counted where the
kernel charges it: a loopback TCP send pays for much of the receiver's
processing, so compare totals as much as roles.
"""
import json
import os
import sys

TICKS = os.sysconf("SC_CLK_TCK")


def parents():
    """Each process's parent, from /proc/PID/stat."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                found[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return found


def role(pid):
    """A process's role, from its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return None
    words = [a.decode(errors="replace") for a in args if a]
    if not words:
        return None
    name = os.path.basename(words[0])
    if "worker" in words[1:2] and "--pool" in words:
        return "inetsrv worker"
    if "spawner" in words[1:2]:
        return "inetsrv spawner"
    if name == "inetsrv" or (name.startswith("inetsrv") and "start" in words):
        return "inetsrv listener"
    if name.startswith("php-fpm") or words[0].startswith("php-fpm"):
        return "php-fpm"
    if name.startswith("php"):
        return "php-cgi"
    if words[0].startswith("nginx"):
        return "nginx"
    return name


def sample(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are the 14th and 15th fields; fields[0] is the 3rd.
    user, system = int(fields[11]), int(fields[12])
    voluntary = involuntary = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
    return {"user": user, "system": system, "vol": voluntary, "invol": involuntary}


def snapshot(roots):
    parent_of = parents()
    children = {}
    for pid, parent in parent_of.items():
        children.setdefault(parent, []).append(pid)
    seen, todo, out = set(), list(roots), {}
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += children.get(pid, [])
        name = role(pid)
        if name is None:
            continue
        try:
            out[str(pid)] = dict(sample(pid), role=name)
        except OSError:
            pass
    return out


def report(label, before, after, requests):
    if requests <= 0:
        print(f"{label}: no requests answered", file=sys.stderr)
        sys.exit(1)
    roles = {}
    for pid, now in after.items():
        was = before.get(pid, {"user": 0, "system": 0, "vol": 0, "invol": 0})
        r = roles.setdefault(now["role"], [0, 0, 0, 0])
        r[0] += now["user"] - was["user"]
        r[1] += now["system"] - was["system"]
        r[2] += now["vol"] - was["vol"]
        r[3] += now["invol"] - was["invol"]
    per = 1e6 / TICKS / requests
    total_user = total_system = 0.0
    print(f"  {label}: {requests} requests; per request:")
    for name in sorted(roles):
        user, system, vol, invol = roles[name]
        if user == system == vol == invol == 0:
            continue
        total_user += user * per
        total_system += system * per
        print(
            f"    {name:18} user {user * per:6.1f} µs  system {system * per:6.1f} µs"
            f"  switches {vol / requests:5.2f} voluntary {invol / requests:5.2f} involuntary"
        )
    print(f"    {'all':18} user {total_user:6.1f} µs  system {total_system:6.1f} µs  ({total_user + total_system:.1f} µs)")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "snapshot":
        json.dump(snapshot([int(p) for p in sys.argv[2:]]), sys.stdout)
    elif len(sys.argv) == 6 and sys.argv[1] == "report":
        if not sys.argv[5].isdigit():
            print(f"{sys.argv[2]}: the load run reported no request count", file=sys.stderr)
            sys.exit(1)
        with open(sys.argv[3]) as b, open(sys.argv[4]) as a:
            report(sys.argv[2], json.load(b), json.load(a), int(sys.argv[5]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
