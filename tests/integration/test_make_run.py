#!/usr/bin/env python3
"""`make run`'s script (scripts/run-local.sh) with the release binaries, as a new
user runs it: the command it prints works as printed; after the local token is
revoked, the next run replaces it (same cluster) instead of printing a command
that answers 503; a port that is taken ends the run with a message; the admin
API key never appears on a command line (where `ps` shows it to every user),
neither the script's own calls nor the command it prints."""

import json
import os
import re
import signal
import socket
import subprocess
import time

from harness import ROOT, check, contains, eq, free_port, main, procs_matching, test, wait_until

SCRIPT = os.path.join(ROOT, "scripts", "run-local.sh")
REL = os.path.join(ROOT, "build", "rel")


class Run:
    def __init__(self, t, data, port, health, extra_env=None):
        # (no .env of the checkout's: a developer's own would change the run)
        env = dict(os.environ, AURORA_DATA_DIR=data, AURORA_PORT=str(port),
                   AURORA_HEALTH_PORT=str(health), AURORA_BIND="127.0.0.1",
                   AURORA_ENV_FILE=os.path.join(t.tmp, "absent.env"))
        env.update(extra_env or {})
        self.log = os.path.join(t.tmp, "run-%d.log" % time.monotonic_ns())
        self.f = open(self.log, "wb")
        self.p = subprocess.Popen(["bash", SCRIPT], env=env, cwd=ROOT, stdout=self.f,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        t.defer(self.stop)

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_banner(self, timeout=60):
        def done():
            s = self.text()
            if self.p.poll() is not None:
                raise AssertionError("run-local.sh exited %s:\n%s" % (self.p.returncode, s[-3000:]))
            return s if "Press Ctrl-C to stop." in s else None
        return wait_until(done, timeout, 0.1, "make run's banner")

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGINT)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.f.close()


def printed_curl(banner):
    """The command as printed (a continued shell line), run by bash as a user would."""
    m = re.search(r"^  (curl .*?kubectl)$", banner, re.S | re.M)
    check(m, "no curl command in the banner", banner)
    return m.group(1)


def check_console_line(banner, data, port):
    """The banner names the web console and the key to sign in with; the page
    answers there, the key signs in, and FRONTEND_URL (where OAuth callbacks
    send the browser back) is the server's own URL."""
    m = re.search(r"^console: (https://localhost:(\d+)/)  \(sign in with API key: (\S+)\)$",
                  banner, re.M)
    check(m, "no console line in the banner", banner)
    url, key = m.group(1), m.group(3)
    eq(int(m.group(2)), port, "the console is on the server's port")
    eq(key, open(os.path.join(data, "admin-api-key")).read().strip(), "the admin key")
    ca = os.path.join(data, "tls", "server.crt")
    page = subprocess.run(["curl", "-sS", "-i", "--cacert", ca, url], capture_output=True,
                          timeout=30).stdout.decode()
    contains(page, "content-security-policy:", "the console page with its CSP")
    contains(page, "<!doctype html>", "the console page")
    r = subprocess.run(["curl", "-sS", "--cacert", ca, "-H", "Content-Type: application/json",
                        "-d", '{"api_key":"%s"}' % key, url + "api/console/session"],
                       capture_output=True, timeout=30).stdout.decode()
    contains(r, '"csrf_token"', "the printed key signs in")
    servers = [pid for pid, cmd in procs_matching("aurora-server serve")
               if ("AURORA_DATA_DIR=%s\0" % data).encode() in environ(pid)]
    eq(len(servers), 1, "the run's server process")
    check(("FRONTEND_URL=https://localhost:%d\0" % port).encode() in environ(servers[0]),
          "FRONTEND_URL is the server's own URL")


def environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read() + b"\0"
    except OSError:
        return b""


def run_printed(cmd, env=None):
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=60, cwd=ROOT, env=env)
    return r.stdout.decode()


def curl_recorder(t):
    """A directory to put first in PATH: its `curl` writes its arguments (one
    NUL-separated record a line) to the returned log, then runs the real one."""
    real = subprocess.run(["bash", "-c", "command -v curl"], capture_output=True,
                          timeout=10).stdout.decode().strip()
    check(real, "curl not found")
    d = os.path.join(t.tmp, "recorder")
    os.makedirs(d, exist_ok=True)
    log = os.path.join(t.tmp, "curl-argv.log")
    with open(os.path.join(d, "curl"), "w") as f:
        f.write("#!/bin/sh\n{ printf '%%s\\0' \"$@\"; echo; } >> %s\nexec %s \"$@\"\n"
                % (log, real))
    os.chmod(os.path.join(d, "curl"), 0o755)
    return d, log


@test(timeout=240)
def printed_command_works_and_a_revoked_token_is_replaced(t):
    check(os.access(os.path.join(REL, "aurora-server"), os.X_OK), "build/rel missing (make all)")
    data = os.path.join(t.tmp, "data")
    port, health = free_port(), free_port()
    run = Run(t, data, port, health)
    banner = run.wait_banner()
    cmd = printed_curl(banner)
    out = run_printed(cmd)
    contains(out, '"return_code":0', "the printed command runs kubectl through the tunnel")
    check_console_line(banner, data, port)
    cluster = open(os.path.join(data, "agent-cluster-id")).read().strip()
    contains(cmd, cluster, "the command names the local cluster")

    key = open(os.path.join(data, "admin-api-key")).read().strip()
    tid = open(os.path.join(data, "agent-token-id")).read().strip()
    ca = os.path.join(data, "tls", "server.crt")
    r = subprocess.run(["curl", "-sS", "--cacert", ca, "-X", "DELETE", "-H",
                        "Authorization: Bearer " + key,
                        "https://localhost:%d/api/kubectl/tokens/%s" % (port, tid)],
                       capture_output=True, timeout=30)
    contains(r.stdout.decode(), '"revoked":true', "token revoked")
    run.stop()

    run2 = Run(t, data, port, health)
    banner2 = run2.wait_banner()
    contains(banner2, "creating a new one", "the revoked token is noticed")
    check(open(os.path.join(data, "agent-token-id")).read().strip() != tid, "a new token id")
    eq(open(os.path.join(data, "agent-cluster-id")).read().strip(), cluster, "same cluster")
    contains(run_printed(printed_curl(banner2)), '"return_code":0', "the command works again")


def list_tokens(data, port):
    key = open(os.path.join(data, "admin-api-key")).read().strip()
    r = subprocess.run(["curl", "-sS", "--cacert", os.path.join(data, "tls", "server.crt"), "-H",
                        "Authorization: Bearer " + key,
                        "https://localhost:%d/api/kubectl/tokens" % port],
                       capture_output=True, timeout=30)
    return json.loads(r.stdout.decode())["tokens"]


def saved(data, name):
    return open(os.path.join(data, name)).read().strip()


@test(timeout=300)
def a_run_stopped_while_saving_the_token_is_recovered(t):
    """The agent token, its id and the cluster id are saved one after the
    other once the token is made: a run stopped in between (a crash, Ctrl-C)
    used to make the next one create a second "local" cluster and leave the
    first token active though its value was never kept, or stop without a
    word when only the cluster id was missing.  The next run reuses the
    cluster, revokes the tokens nobody holds, and the printed command works."""
    check(os.access(os.path.join(REL, "aurora-server"), os.X_OK), "build/rel missing (make all)")
    data = os.path.join(t.tmp, "data")
    port, health = free_port(), free_port()
    first = Run(t, data, port, health)
    first.wait_banner()
    first.stop()
    cluster, tid = saved(data, "agent-cluster-id"), saved(data, "agent-token-id")

    # A first run stopped after writing the token, before its id and the cluster's.
    os.unlink(os.path.join(data, "agent-token-id"))
    os.unlink(os.path.join(data, "agent-cluster-id"))
    second = Run(t, data, port, health)
    banner = second.wait_banner()
    eq(saved(data, "agent-cluster-id"), cluster, "the cluster is reused")
    tokens = list_tokens(data, port)
    eq(sorted(set(x["cluster_id"] for x in tokens)), [cluster], "no second cluster")
    active = [x["id"] for x in tokens if x["status"] == "active"]
    eq(active, [saved(data, "agent-token-id")], "only the saved token is active")
    check(tid not in active, "the token never saved is revoked")
    contains(run_printed(printed_curl(banner)), '"return_code":0', "the printed command works")
    second.stop()

    # Stopped after the token and its id, before the cluster id.
    tid = saved(data, "agent-token-id")
    os.unlink(os.path.join(data, "agent-cluster-id"))
    third = Run(t, data, port, health)
    banner = third.wait_banner()
    eq(saved(data, "agent-cluster-id"), cluster, "the cluster id is found again")
    eq(saved(data, "agent-token-id"), tid, "the saved token, still active, is kept")
    contains(printed_curl(banner), cluster, "the command names the cluster")
    contains(run_printed(printed_curl(banner)), '"return_code":0', "the printed command works")


@test(timeout=240)
def the_admin_key_never_goes_on_a_command_line(t):
    """Any local user reads every process's arguments (/proc/<pid>/cmdline,
    `ps`): the script's curl calls and the command it prints must pass the key
    some other way, and still work."""
    check(os.access(os.path.join(REL, "aurora-server"), os.X_OK), "build/rel missing (make all)")
    rec, log = curl_recorder(t)
    path = rec + os.pathsep + os.environ.get("PATH", "")
    data = os.path.join(t.tmp, "data")
    run = Run(t, data, free_port(), free_port(), {"PATH": path})
    banner = run.wait_banner()
    out = run_printed(printed_curl(banner), dict(os.environ, PATH=path))
    contains(out, '"return_code":0', "the printed command still works")
    key = open(os.path.join(data, "admin-api-key")).read().strip()
    calls = open(log, "rb").read().decode("utf-8", "replace").splitlines()
    authed = [c for c in calls if "/api/kubectl/tokens" in c or "/kubectl" in c]
    check(len(authed) >= 2, "the script's and the printed command's API calls were recorded", calls)
    for c in calls:
        check(key not in c, "the admin API key is on a curl command line",
              c.replace("\0", " ").replace(key, "<KEY>"))


@test(timeout=240)
def the_agent_is_not_given_the_servers_secrets(t):
    """The agent stands for the cluster: its environment (which kubectl and
    its credential plugins inherit) holds its own token, never the server's
    internal secret (which acts as any user of any organization)."""
    check(os.access(os.path.join(REL, "aurora-server"), os.X_OK), "build/rel missing (make all)")
    data = os.path.join(t.tmp, "data")
    run = Run(t, data, free_port(), free_port())
    run.wait_banner()
    secret = open(os.path.join(data, "internal-api-secret")).read().strip()
    mine = ("AURORA_DATA_DIR=%s\0" % data).encode()
    agents = [pid for pid, cmd in procs_matching("aurora-agent") if mine in environ(pid)]
    servers = [pid for pid, cmd in procs_matching("aurora-server serve") if mine in environ(pid)]
    eq((len(agents), len(servers)), (1, 1), "the run's agent and server processes")
    check(("INTERNAL_API_SECRET=%s\0" % secret).encode() in environ(servers[0]),
          "the server has the internal secret (positive control)")
    check(b"INTERNAL_API_SECRET=" not in environ(agents[0]), "the agent has the internal secret")
    check(b"AURORA_AGENT_TOKEN=" in environ(agents[0]), "the agent has its token")


@test(timeout=240)
def a_run_that_lost_the_admin_key_makes_another(t):
    """A run stopped between bootstrapping the store and saving the key it
    printed (Ctrl-C at that moment, a crash), or a removed admin-api-key: the
    next run used to stop for good with instructions; it makes a new key for
    the organization's admin, and the printed command works with it."""
    check(os.access(os.path.join(REL, "aurora-server"), os.X_OK), "build/rel missing (make all)")
    data = os.path.join(t.tmp, "data")
    port, health = free_port(), free_port()
    first = Run(t, data, port, health)
    first.wait_banner()
    first.stop()
    keyfile = os.path.join(data, "admin-api-key")
    old = open(keyfile).read().strip()
    os.unlink(keyfile)
    second = Run(t, data, port, health)
    banner = second.wait_banner()
    new = open(keyfile).read().strip()
    check(new and new != old, "a new admin key saved")
    eq(oct(os.stat(keyfile).st_mode & 0o777), oct(0o600), "the key file's mode")
    contains(run_printed(printed_curl(banner)), '"return_code":0', "the printed command works")


@test(timeout=240)
def a_server_left_running_on_the_port_ends_the_run_with_a_reason(t):
    """A second run while the first one's server still answers on the port
    (another terminal, or left behind by a killed run): it used to take that
    server's /health for its own, go on (its own server dead), start a second
    agent with the same token and print the banner; it must stop at once,
    saying why, and leave the first run working."""
    check(os.access(os.path.join(REL, "aurora-server"), os.X_OK), "build/rel missing (make all)")
    data = os.path.join(t.tmp, "data")
    port = free_port()
    first = Run(t, data, port, free_port())
    banner = first.wait_banner()
    second = Run(t, data, port, free_port())
    wait_until(lambda: second.p.poll() is not None, 90, 0.1, "the second run to give up")
    check(second.p.returncode != 0, "non-zero exit")
    text = second.text()
    contains(text, "already answers on port %d" % port, "the reason is printed")
    check("Aurora is running" not in text, "no banner for a run that is not running", text)
    check(first.p.poll() is None, "the first run goes on")
    contains(run_printed(printed_curl(banner)), '"return_code":0', "the first run still works")


def write_env_file(t, text, mode=0o600):
    path = os.path.join(t.tmp, "guide-%d.env" % time.monotonic_ns())
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


@test(timeout=240)
def the_guides_env_file_configures_the_server(t):
    """The connector guide has users put settings in .env ("set SLACK_CLIENT_ID
    and SLACK_CLIENT_SECRET in .env and restart Aurora", the server's own
    message too): make run reads it, as docker compose would (comments,
    `export`, quotes); the caller's environment wins over it; the server gets
    its values, the agent none of them."""
    check(os.access(os.path.join(REL, "aurora-server"), os.X_OK), "build/rel missing (make all)")
    data = os.path.join(t.tmp, "data")
    port = free_port()
    secret = 'guide "secret" # kept'
    env_file = write_env_file(t, "# Slack, as the guide says\n"
                                 "export SLACK_CLIENT_ID=guide-client-4711\r\n"
                                 "SLACK_CLIENT_SECRET=\"guide \\\"secret\\\" # kept\"  # a comment\n"
                                 "\n"
                                 "AURORA_PORT=1\n")
    run = Run(t, data, port, free_port(), {"AURORA_ENV_FILE": env_file})
    banner = run.wait_banner()
    contains(run_printed(printed_curl(banner)), '"return_code":0',
             "the environment's AURORA_PORT won over .env's")
    key = open(os.path.join(data, "admin-api-key")).read().strip()
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                        "--cacert", os.path.join(data, "tls", "server.crt"), "-K", "-",
                        "https://localhost:%d/slack/login" % port],
                       input=('header = "Authorization: Bearer %s"\n' % key).encode(),
                       capture_output=True, timeout=30)
    status, location = (r.stdout.decode().split(" ", 1) + [""])[:2]
    eq(status, "302", "Slack is configured from .env (%s)" % r.stderr.decode())
    contains(location, "client_id=guide-client-4711", "the client id of .env")
    mine = ("AURORA_DATA_DIR=%s\0" % data).encode()
    agents = [pid for pid, cmd in procs_matching("aurora-agent") if mine in environ(pid)]
    servers = [pid for pid, cmd in procs_matching("aurora-server serve") if mine in environ(pid)]
    eq((len(agents), len(servers)), (1, 1), "the run's agent and server processes")
    check(("SLACK_CLIENT_SECRET=%s\0" % secret).encode() in environ(servers[0]),
          "the server has .env's secret, unquoted and unescaped")
    check(b"SLACK_CLIENT" not in environ(agents[0]), "the agent got .env's Slack settings")


@test(timeout=240)
def a_compose_env_file_naming_shell_variables_still_runs(t):
    """Compose .env files often set UID and GID (for the containers' user).
    bash holds UID read-only, and exporting it killed the server's subshell
    ("UID: readonly variable"): make run ended with the server failed to
    start.  BIN named the directory of the program the script runs, so a
    .env with BIN=… ran something else.  UID is left out with a note; BIN
    and the script's other names reach the server as plain settings."""
    check(os.access(os.path.join(REL, "aurora-server"), os.X_OK), "build/rel missing (make all)")
    data = os.path.join(t.tmp, "data")
    env_file = write_env_file(t, "UID=4242\nGID=4242\nBIN=/nonexistent\nOWN=\n"
                                 "SLACK_CLIENT_ID=after-the-shell-names\n")
    run = Run(t, data, free_port(), free_port(), {"AURORA_ENV_FILE": env_file})
    banner = run.wait_banner()
    contains(banner, "%s: UID is read-only in the shell; not passed to the server" % env_file,
             "the note on UID")
    mine = ("AURORA_DATA_DIR=%s\0" % data).encode()
    servers = [pid for pid, cmd in procs_matching("aurora-server serve") if mine in environ(pid)]
    eq(len(servers), 1, "the run's server process")
    env = b"\0" + environ(servers[0])
    for want in ("GID=4242", "BIN=/nonexistent", "SLACK_CLIENT_ID=after-the-shell-names"):
        check(("\0%s\0" % want).encode() in env, "the server has %s" % want)
    check(b"\0UID=4242\0" not in env, "UID is not passed")


@test(timeout=240)
def a_comment_after_an_unquoted_value_is_not_the_value(t):
    """The guide's GitHub OAuth block, pasted into .env, holds
    `GITHUB_AUTH_MODE=oauth # or hybrid if you also have an App`.  docker
    compose ends an unquoted value at a blank followed by `#`; taken whole, the
    server got "oauth # or hybrid …" and every GitHub route answered 500
    GITHUB_AUTH_MODE_INVALID.  A `#` inside a value (no blank before it) stays."""
    check(os.access(os.path.join(REL, "aurora-server"), os.X_OK), "build/rel missing (make all)")
    data = os.path.join(t.tmp, "data")
    port = free_port()
    env_file = write_env_file(t, "GITHUB_AUTH_MODE=oauth # or hybrid if you also have an App\n"
                                 "GH_OAUTH_CLIENT_ID=your-github-client-id\t# tab before it\n"
                                 "GH_OAUTH_CLIENT_SECRET=pa#ss#word\n")
    run = Run(t, data, port, free_port(), {"AURORA_ENV_FILE": env_file})
    run.wait_banner()
    mine = ("AURORA_DATA_DIR=%s\0" % data).encode()
    servers = [pid for pid, cmd in procs_matching("aurora-server serve") if mine in environ(pid)]
    eq(len(servers), 1, "the run's server process")
    env = environ(servers[0])
    for want in ("GITHUB_AUTH_MODE=oauth", "GH_OAUTH_CLIENT_ID=your-github-client-id",
                 "GH_OAUTH_CLIENT_SECRET=pa#ss#word"):
        check(("\0%s\0" % want).encode() in b"\0" + env, "the server has %s" % want)
    key = open(os.path.join(data, "admin-api-key")).read().strip()
    r = subprocess.run(["curl", "-sS", "--cacert", os.path.join(data, "tls", "server.crt"), "-K", "-",
                        "https://localhost:%d/github/status" % port],
                       input=('header = "Authorization: Bearer %s"\n' % key).encode(),
                       capture_output=True, timeout=30)
    try:
        st = json.loads(r.stdout.decode())
    except ValueError:
        st = {}
    eq(st.get("auth_mode"), "oauth", "GitHub's mode as .env sets it (%r)" % r.stdout[:300])


@test(timeout=120)
def a_bad_env_file_ends_the_run_with_a_reason(t):
    """A .env others may write (its lines become the server's settings) or
    with a line that is not KEY=value: the run stops before starting
    anything, naming the file and the line, never printing the line (it may
    hold a secret)."""
    for text, mode, reason in (
            ("A=1\nthis line holds hunter2-secret\n", 0o600, "line 2 is not KEY=value"),
            ("B='hunter2-secret\n", 0o600, "line 1 (B): unterminated single quote"),
            ("C=1\n", 0o620, "writable by other users")):
        env_file = write_env_file(t, text, mode)
        run = Run(t, os.path.join(t.tmp, "data"), free_port(), free_port(),
                  {"AURORA_ENV_FILE": env_file})
        wait_until(lambda: run.p.poll() is not None, 60, 0.1, "run-local.sh to give up")
        check(run.p.returncode != 0, "non-zero exit")
        out = run.text()
        contains(out, "%s: %s" % (env_file, reason), "the reason is printed")
        check("hunter2" not in out, "the line's text is printed", out)
        check("Aurora is running" not in out, "no banner", out)


@test(timeout=120)
def the_env_file_read_is_the_one_checked(t):
    """The owner and mode checks were made on the file's name, and the lines
    then read from the name again: whoever may write the directory (a shared
    checkout, AURORA_ENV_FILE in /tmp) could put a file of their own there in
    between, and its lines became the server's settings (LD_PRELOAD among
    them).  The file is opened once, and what is checked is what is read.
    The swap is made deterministic with a `stat` ahead in PATH that renames
    another user's stand-in (mode 666) over the name when the check runs."""
    import shutil
    env_file = write_env_file(t, "A=1\nthe checked file's line 2\n")
    swap = write_env_file(t, "A=1\nB=2\nthe swapped-in file's line 3\n", 0o666)
    real = shutil.which("stat")
    check(real, "no stat in PATH")
    fake = os.path.join(t.tmp, "fakebin-%d" % time.monotonic_ns())
    os.mkdir(fake)
    with open(os.path.join(fake, "stat"), "w") as f:
        # (the answer is the real one, for the file the check named; the name
        # changes hands right after)
        f.write("#!/bin/sh\nout=$('%s' \"$@\"); rc=$?\n[ -e '%s' ] && mv -f '%s' '%s'\n"
                "printf '%%s\\n' \"$out\"\nexit $rc\n" % (real, swap, swap, env_file))
    os.chmod(os.path.join(fake, "stat"), 0o755)
    run = Run(t, os.path.join(t.tmp, "data"), free_port(), free_port(),
              {"AURORA_ENV_FILE": env_file, "PATH": fake + os.pathsep + os.environ["PATH"]})
    wait_until(lambda: run.p.poll() is not None, 60, 0.1, "run-local.sh to give up")
    check(not os.path.exists(swap), "the stand-in was swapped in during the check")
    out = run.text()
    check(run.p.returncode != 0, "non-zero exit", out)
    contains(out, "%s: line 2 is not KEY=value" % env_file, "the checked file's lines are read")
    check("line 3" not in out, "the swapped-in file was read", out)


@test(timeout=120)
def a_port_that_is_taken_ends_the_run_with_a_reason(t):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    t.defer(s.close)
    port = s.getsockname()[1]
    run = Run(t, os.path.join(t.tmp, "data"), port, free_port())
    wait_until(lambda: run.p.poll() is not None, 90, 0.1, "run-local.sh to give up")
    check(run.p.returncode != 0, "non-zero exit")
    contains(run.text(), "failed to start", "the reason is printed")


if __name__ == "__main__":
    main()
