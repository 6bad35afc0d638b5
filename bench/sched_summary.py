#!/usr/bin/env python3
"""sched_summary.py — where a command's wall time goes between threads.

    python3 bench/sched_summary.py --sched-data DIR/sched.data --per-command N \
        --server-pid P --agent-pid Q

reads `perf sched timehist` of a recording made with BENCH_PERF_SCHED=DIR
(bench/run.sh: `perf sched record -a` while row 1 runs) and prints, for the
server's event loop, its store workers, the agent's event loop and its job
threads: CPU run time, scheduling delay (from a thread's wake-up until it runs
on a CPU: what each hop between threads costs beyond its CPU) and context
switches, each per command.  perf_fold.py says which functions take the CPU;
this says whether the time between threads is waiting for a CPU or running.

Then, the wake-ups of those threads split by where the woken thread ran: on
the CPU of the thread that woke it, or on another one (on a VM, waking an idle
virtual CPU is the hypervisor's work: bench/hop_bench.c measures one hop each
way), with the scheduling delay of each kind.

Then, from the wake-up events (`perf sched timehist -w`), one command's path
hop by hop: from each wake-up to the next along the chain client -> server
loop -> store worker -> server loop -> agent loop -> job thread -> spawned
child -> (the command runs) -> agent loop -> server loop -> client, p50 and
p90 over the commands whose chain was seen whole.  Only meaningful when the
commands ran one at a time (BENCH_CONCURRENCY=1): at higher concurrency the
chains interleave and few are matched.

Last, the command itself (every process that ran as COMMAND, `echo` in row
1), in each arm: its CPU (the run time of all its rows), split by who started
it (a thread of the agent, or the bench client) and whether it ran only on the
CPU its starter was on when it made it.  A program that starts on another CPU
finds nothing of its parent's fresh state in the caches (bench/exec_bench.c
measures what such a move costs here).
Python 3 stdlib only.
"""

import argparse
import collections
import re
import subprocess
import sys

# "  44775.569523 [0000]  aurora-server[22945/22942]   0.012   0.004   0.031"
ROW = re.compile(r"^\s*(\d+\.\d+)\s+\[\d+\]\s+(.*?)\[(-?\d+)(?:/(-?\d+))?\]\s+"
                 r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


# The CPU a row or a wake-up line was recorded on (the waker's, for a wake-up).
CPU = re.compile(r"^\s*\d+\.\d+\s+\[(\d+)\]")


def role(tid, pid, server_pid, agent_pid):
    if pid == server_pid:
        return "server event loop" if tid == pid else "server store workers"
    if pid == agent_pid:
        return "agent event loop" if tid == pid else "agent job threads"
    return None


# "  81432.141040 [0001]  echo[12920]        awakened: aurora-agent[12857/12806]"
WAKE = re.compile(r"^\s*(\d+\.\d+)\s+\[\d+\]\s+(.*?)\[(-?\d+)(?:/(-?\d+))?\]\s+"
                  r"awakened: (.*?)\[(-?\d+)(?:/(-?\d+))?\]\s*$")

# One command's chain of wake-ups (waker, wakee); hop i runs from wake-up i
# to wake-up i + 1.  "client" is any process that is neither the server, the
# agent, a child of the agent nor a kernel thread.
CHAIN = (("client", "loop"), ("loop", "worker"), ("worker", "loop"), ("loop", "agent"),
         ("agent", "job"), ("job", "child"), ("child", "job"), ("job", "agent"),
         ("loop", "client"))
HOPS = ("server loop: request read and parsed, handed to a store worker",
        "store worker: key lookup, started row committed",
        "server loop: exec frame written to the agent",
        "agent loop: frame read, job handed to a job thread",
        "job thread: pipes, spawn",
        "child: from vfork until execve releases the parent",
        "the command runs; its exit seen, exec_end queued",
        "agent loop -> server loop -> answer to the client")
KERNEL = ("swapper", "ksoftirqd", "kworker", "rcu_", "migration", "kcompactd", "jbd2")


def command_chains(lines, server_pid, agent_pid):
    """Per command whose chain was seen whole: the hop durations (ms)."""
    children = set()

    def kind(comm, tid, pid):
        if pid == server_pid:
            return "loop" if tid == pid else "worker"
        if pid == agent_pid:
            return "agent" if tid == pid else "job"
        if pid in children:
            return "child"
        return "kernel" if comm.startswith(KERNEL) else "client"

    marks, done = None, []
    for line in lines:
        m = WAKE.match(line)
        if not m:
            continue
        t = float(m.group(1)) * 1000.0
        wtid, ttid = int(m.group(3)), int(m.group(6))
        waker = kind(m.group(2), wtid, int(m.group(4)) if m.group(4) else wtid)
        tpid = int(m.group(7)) if m.group(7) else ttid
        wakee = kind(m.group(5), ttid, tpid)
        if waker == "job" and wakee == "client":
            children.add(tpid)  # a job thread waking a process it has just made
            wakee = "child"
        pair = (waker, wakee)
        if pair == CHAIN[0]:
            marks = [t]  # a request wakes the server: a new chain
        elif marks is None:
            continue
        elif len(marks) == len(CHAIN) - 1 and pair == CHAIN[-2]:
            marks[-1] = t  # output, then exec_end: the last one counts
        elif pair == CHAIN[len(marks)]:
            marks.append(t)
            if len(marks) == len(CHAIN):
                done.append([b - a for a, b in zip(marks, marks[1:])])
                marks = None
    return done


def events(lines):
    """(CPU the line was recorded on, WAKE match or None, ROW match or None)
    for each wake-up line and each scheduling row of `perf sched timehist -w`."""
    for line in lines:
        c = CPU.match(line)
        if not c:
            continue
        w = WAKE.match(line)
        r = None if w else ROW.match(line)
        if w or r:
            yield int(c.group(1)), w, r


def wakee(w):
    """(tid, pid) of the thread a WAKE match woke."""
    tid = int(w.group(6))
    return tid, int(w.group(7)) if w.group(7) else tid


def wake_placement(lines, server_pid, agent_pid):
    """{"same CPU"|"another CPU": [scheduling delay ms, ...]} over the wake-ups
    of the server's and the agent's threads: whether the woken thread then ran
    on its waker's CPU, and how long it waited for it."""
    waker_cpu = {}  # woken tid -> the waker's CPU, until the tid's next row
    out = {"same CPU": [], "another CPU": []}
    for cpu, w, r in events(lines):
        if w:
            tid, pid = wakee(w)
            if pid in (server_pid, agent_pid):
                waker_cpu[tid] = cpu
            continue
        tid = int(r.group(3))
        if tid in waker_cpu:
            where = "same CPU" if waker_cpu.pop(tid) == cpu else "another CPU"
            out[where].append(float(r.group(6)))
    return out


def command_cpu(lines, agent_pid, command):
    """{(started by, where it ran): [CPU ms per process]} for each process that
    ran as `command`; its starter is the thread whose wake-up of the new pid
    came first (the one that made it), and "stayed" means every row of the
    process is on that thread's CPU at that moment."""
    starter = {}  # pid -> (starter is the agent, the starter's CPU)
    cpu_ms = collections.Counter()
    cpus = collections.defaultdict(set)
    is_command = set()
    for cpu, w, r in events(lines):
        if w:
            tid, pid = wakee(w)
            waker_pid = int(w.group(4)) if w.group(4) else int(w.group(3))
            if tid == pid and pid not in starter:
                starter[pid] = (waker_pid == agent_pid, cpu)
            continue
        pid = int(r.group(4)) if r.group(4) else int(r.group(3))
        if r.group(2) == command:
            is_command.add(pid)
        cpu_ms[pid] += float(r.group(7))
        cpus[pid].add(cpu)
    out = collections.defaultdict(list)
    for pid in is_command:
        if pid not in starter:
            continue  # started before the recording
        by_agent, where = starter[pid]
        stayed = cpus[pid] == {where}
        out[("the agent (tunnel)" if by_agent else "the client (direct)",
             "its starter's CPU only" if stayed else "another CPU too")].append(cpu_ms[pid])
    return out


def print_command_cpu(groups, command):
    print(f"-- the command itself ({command}): its CPU per process, by who started it and "
          "where it ran")
    print("%-22s %-24s %9s %10s %10s" % ("started by", "ran on", "processes", "CPU p50 us",
                                          "CPU p90 us"))
    for by in ("the agent (tunnel)", "the client (direct)"):
        for where in ("its starter's CPU only", "another CPU too"):
            xs = groups.get((by, where))
            if xs:
                print("%-22s %-24s %9d %10.0f %10.0f" % (by, where, len(xs),
                                                         pctl(xs, 50) * 1000,
                                                         pctl(xs, 90) * 1000))


def pctl(xs, p):
    """Nearest-rank percentile."""
    xs = sorted(xs)
    k = max(1, -(-len(xs) * p // 100))
    return xs[int(k) - 1]


def print_hops(chains, n):
    print(f"-- one command's path, hop by hop ({len(chains)} of {n} commands seen whole; "
          "meaningful at concurrency 1)")
    print("%-62s %8s %8s" % ("hop", "p50 us", "p90 us"))
    for i, label in enumerate(HOPS):
        xs = [c[i] for c in chains]
        print("%-62s %8.0f %8.0f" % (label, pctl(xs, 50) * 1000, pctl(xs, 90) * 1000))
    tot = [sum(c) for c in chains]
    print("%-62s %8.0f %8.0f" % ("request to answer", pctl(tot, 50) * 1000,
                                 pctl(tot, 90) * 1000))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sched-data", required=True, help="perf sched record output")
    ap.add_argument("--per-command", type=int, required=True, help="commands it covers")
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--agent-pid", type=int, required=True)
    ap.add_argument("--command", default="echo", help="the command's process name")
    a = ap.parse_args()
    # -w adds the wake-up events (for the hops) between the usual rows
    out = subprocess.run(["perf", "sched", "timehist", "-w", "-i", a.sched_data],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("perf sched timehist failed: " + out.stderr.strip())
    run = collections.Counter()
    delay = collections.Counter()
    switches = collections.Counter()
    lines = out.stdout.splitlines()
    for line in lines:
        m = ROW.match(line)
        if not m:
            continue
        tid = int(m.group(3))
        pid = int(m.group(4)) if m.group(4) else tid
        r = role(tid, pid, a.server_pid, a.agent_pid)
        if r is None:
            continue
        run[r] += float(m.group(7))
        delay[r] += float(m.group(6))
        switches[r] += 1
    n = a.per_command
    print("%-22s %14s %16s %14s" % ("thread", "run us/cmd", "wake delay us/cmd", "switches/cmd"))
    for r in ("server event loop", "server store workers", "agent event loop",
              "agent job threads"):
        print("%-22s %14.0f %16.0f %14.1f" % (r, run[r] * 1000 / n, delay[r] * 1000 / n,
                                               switches[r] / n))
    print("%-22s %14.0f %16.0f %14.1f" % ("total", sum(run.values()) * 1000 / n,
                                          sum(delay.values()) * 1000 / n,
                                          sum(switches.values()) / n))
    placed = wake_placement(lines, a.server_pid, a.agent_pid)
    print("-- wake-ups of these threads, by where the woken thread ran")
    print("%-22s %14s %16s %16s" % ("ran on", "wake-ups/cmd", "delay p50 us", "delay mean us"))
    for where, xs in placed.items():
        if xs:
            print("%-22s %14.1f %16.0f %16.0f" % (where, len(xs) / n, pctl(xs, 50) * 1000,
                                                  sum(xs) * 1000 / len(xs)))
    chains = command_chains(lines, a.server_pid, a.agent_pid)
    if chains:
        print_hops(chains, n)
    else:
        print("-- one command's path: no command's chain of wake-ups was seen whole")
    groups = command_cpu(lines, a.agent_pid, a.command)
    if groups:
        print_command_cpu(groups, a.command)


if __name__ == "__main__":
    main()
