#!/usr/bin/env python3
"""aurora-server's command line, through the real binary (build/asan).

  - every command and subcommand takes --help/-h: usage on stdout, exit 0,
    and nothing touched (an empty AURORA_DATA_DIR stays absent, even with
    settings that would not load; `serve --help` returns at once);
  - every bad command line (unknown command or option, missing value, option
    given twice, argument too many, bad value) exits 2 with one line on
    stderr that names the problem and a pointer to --help, touching nothing;
  - a command that runs and fails exits 1;
  - the operator's list and revoke commands, with the effect checked through
    the running server (a revoked or removed key is answered 401);
  - `admin routes` prints the route table without any settings.
"""

import concurrent.futures
import json
import os
import sqlite3
import subprocess
import time

from harness import (SERVER_BIN, World, _base_env, _san_env, check, contains, eq, main, rand_tag,
                     sanitizer_reports, test, wait_until)

# Every admin command; `admin --help` must list exactly these.
ADMIN_COMMANDS = ["bootstrap", "create-org", "list-orgs", "delete-org", "create-user",
                  "add-member", "list-users", "remove-user", "create-key", "list-keys",
                  "revoke-key", "create-agent-token", "import-agent-token", "expire-token", "audit",
                  "redact-audit", "redact-webhooks", "webhooks-retry", "routes"]
SECRETS_COMMANDS = ["migrate", "rotate-key", "put", "list", "delete"]
RCA_COMMANDS = ["counts", "list", "watch"]


def run(t, args, data=None, extra_env=None, timeout=30, stdin=None):
    """Runs aurora-server ARGS with its own sanitizer dir; (rc, stdout, stderr).
    data: AURORA_DATA_DIR (default: a fresh path that does not exist)."""
    tag = rand_tag(6)
    sandir = os.path.join(t.tmp, "san", tag)
    env = _base_env(os.path.join(t.tmp, "home"))
    env["AURORA_DATA_DIR"] = data or os.path.join(t.tmp, "absent-" + tag)
    env.update(_san_env(sandir))
    env.update(extra_env or {})
    r = subprocess.run([SERVER_BIN] + list(args), env=env, cwd=t.tmp, capture_output=True,
                       timeout=timeout, input=stdin)
    reports = sanitizer_reports(sandir)
    check(not reports, "aurora-server %s: sanitizer report" % " ".join(args), reports)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def run_many(t, arglist, **kw):
    """run() for each argv of arglist, four at a time; results in arglist's order.
    Each invocation is short and independent (none writes anything): run one
    after the other on a loaded machine, they spend most of their time waiting
    for a CPU to start on, not working."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run(t, args, **kw), arglist))


def help_paths():
    """Every command line that asks for help."""
    paths = [[], ["serve"], ["admin"], ["secrets"], ["rca"]]
    paths += [["admin", c] for c in ADMIN_COMMANDS]
    paths += [["secrets", c] for c in SECRETS_COMMANDS]
    paths += [["rca", c] for c in RCA_COMMANDS]
    return paths


def listed(text, prefix):
    """The command names a usage text lists as `  <prefix> NAME …`."""
    names = []
    for line in text.splitlines():
        if line.startswith("  %s " % prefix):
            names.append(line.split()[1])
    return names


@test(timeout=240)
def test_help_everywhere_without_side_effects(t):
    # Settings that would not load (and a data dir whose parent is missing):
    # --help must not even read them.
    bad_env = {"AURORA_LOG_LEVEL": "not-a-level", "AURORA_PORT": "not-a-port"}
    absent = os.path.join(t.tmp, "missing-parent", "data")
    asks = [path + [flag] for path in help_paths() for flag in ("--help", "-h")]
    for args, (rc, out, err) in zip(asks, run_many(t, asks, data=absent, extra_env=bad_env)):
        path = args[:-1]
        eq(rc, 0, "aurora-server %s exit status (stderr: %s)" % (" ".join(args), err))
        eq(err, "", "aurora-server %s writes nothing on stderr" % " ".join(args))
        check(out.strip(), "aurora-server %s prints its usage" % " ".join(args))
        if len(path) == 2:
            contains(out, "Usage: aurora-server %s %s" % tuple(path),
                     "%s --help names its command" % " ".join(args))
    check(not os.path.exists(os.path.dirname(absent)), "--help created nothing",
          os.listdir(t.tmp))
    # --help wins over other mistakes on the same line.
    for args in (["admin", "create-key", "--bogus", "--help"],
                 ["admin", "create-key", "--org", "--help"],
                 ["rca", "watch", "--max", "0", "-h"],
                 ["secrets", "put", "--help", "extra", "args"]):
        rc, out, err = run(t, args, data=absent, extra_env=bad_env)
        eq((rc, err), (0, ""), "aurora-server %s" % " ".join(args))
        contains(out, "Usage:", "aurora-server %s prints usage" % " ".join(args))
    # `help` and the top-level usage list every command.
    rc, out, _ = run(t, ["help"], data=absent)
    eq(rc, 0, "aurora-server help")
    rc, top, _ = run(t, ["--help"], data=absent)
    eq(listed(top, "admin"), ADMIN_COMMANDS, "--help lists every admin command")
    eq(listed(top, "secrets"), SECRETS_COMMANDS, "--help lists every secrets command")
    for c in RCA_COMMANDS:
        contains(top, "  rca %s" % c, "--help lists rca %s" % c)
    contains(top, "AURORA_DATA_DIR", "--help lists the settings")
    rc, out, _ = run(t, ["admin", "--help"], data=absent)
    eq(listed(out, "admin"), ADMIN_COMMANDS, "admin --help lists every admin command")
    check("expire-oauth-state" not in top, "the test-only command is not in the operator's CLI")
    check(not os.path.exists(os.path.dirname(absent)), "nothing created", os.listdir(t.tmp))


@test(timeout=60)
def test_serve_help_returns_at_once(t):
    data = os.path.join(t.tmp, "data")
    start = time.monotonic()
    rc, out, err = run(t, ["serve", "--help"], data=data, timeout=20,
                       extra_env={"AURORA_PORT": "1", "AURORA_BIND": "127.0.0.1"})
    took = time.monotonic() - start
    eq(rc, 0, "serve --help exit status (%s)" % err)
    contains(out, "Usage: aurora-server [serve]", "serve --help usage")
    contains(out, "AURORA_PORT", "serve --help lists the settings")
    check(took < 15, "serve --help returned at once (%.1fs)" % took)
    check(not os.path.exists(data), "serve --help created no data directory")
    rc, out, err = run(t, ["--version"], data=data)
    eq(rc, 0, "--version")
    check(out.startswith("aurora-server ") and out.count("\n") == 1, "--version prints one line", out)
    check(not os.path.exists(data), "--version created nothing")


# (argv, what stderr must say); each exits 2 and touches nothing.
USAGE_ERRORS = [
    (["frobnicate"], "aurora-server: unknown command 'frobnicate'"),
    (["--bogus"], "aurora-server: unknown option '--bogus'"),
    (["--help", "x"], "unexpected argument at position 2"),
    (["--version", "x"], "unexpected argument at position 2"),
    (["serve", "x"], "aurora-server serve: unexpected argument at position 1 (1 in all; takes none)"),
    (["serve", "--port", "1"], "aurora-server serve: unknown option '--port'"),
    (["admin"], "aurora-server admin: missing command"),
    (["admin", "frob"], "aurora-server admin: unknown command 'frob'"),
    (["admin", "--org", "x"], "aurora-server admin: unknown option '--org'"),
    (["admin", "--help", "x"], "unexpected argument at position 2"),
    (["admin", "expire-oauth-state", "--state", "s"], "unknown command 'expire-oauth-state'"),
    (["admin", "create-org", "--nme", "x"], "aurora-server admin create-org: unknown option '--nme'"),
    (["admin", "create-org", "--name"], "option '--name' requires a value"),
    (["admin", "create-org", "--name="], "option '--name' requires a value"),
    (["admin", "create-org"], "missing option '--name'"),
    (["admin", "create-org", "--name", "a", "extra"], "unexpected argument at position 3"),
    (["admin", "create-org", "--name", "a", "--name=b"], "option '--name' given twice"),
    (["admin", "create-key", "--org", "--user", "u"], "option '--org' requires a value"),
    (["admin", "create-key", "--or=o", "--user", "u"], "unknown option '--or' (did you mean '--org'?)"),
    (["admin", "create-key", "--org", "o"], "missing option '--user'"),
    (["admin", "list-orgs", "-x"], "unknown option '-x'"),
    (["admin", "list-orgs", "extra"], "unexpected argument at position 1"),
    (["admin", "list-keys", "--org"], "option '--org' requires a value"),
    (["admin", "list-users"], "missing option '--org'"),
    (["admin", "revoke-key"], "missing option '--id'"),
    (["admin", "revoke-key", "key_1", "--id", "key_2"], "unexpected argument at position 1"),
    (["admin", "remove-user", "--org", "o"], "missing option '--user'"),
    (["admin", "delete-org", "--name", "o"], "unknown option '--name'"),
    (["admin", "routes", "--json"], "unknown option '--json'"),
    (["admin", "create-user", "--org", "o", "--email", "e", "--role", "root"],
     "--role must be admin or member, not 'root'"),
    (["admin", "create-user", "--org", "o", "--email", "e", "--with-key=yes"],
     "option '--with-key' takes no value"),
    (["admin", "create-org", "--name", "a", "--role", "admin"], "--role needs --user-email"),
    (["admin", "create-org", "--name", "a", "--user-email", "e", "--role", "owner"],
     "--role must be admin or member, not 'owner'"),
    (["admin", "create-org", "--name", "a", "--user-email"], "option '--user-email' requires a value"),
    (["admin", "create-agent-token", "--org", "o", "--user", "u", "--cluster-name", "c",
      "--expires-days", "0"], "--expires-days must be a whole number from 1 to 3650, not '0'"),
    (["admin", "create-agent-token", "--org", "o", "--user", "u", "--cluster-name", "c",
      "--expires-days=7x"], "not '7x'"),
    (["admin", "create-agent-token", "--org", "o", "--user", "u", "--cluster-name", "x" * 101],
     "--cluster-name must be 1 to 100 characters"),
    (["admin", "create-agent-token", "--org", "o", "--user", "u", "--cluster-name", "prod\tb"],
     "--cluster-name must not contain control characters"),
    (["admin", "add-member", "--org", "bad id!", "--user", "u"], "ids are 1-64 characters"),
    (["admin", "bootstrap", "--once"], "unknown option '--once'"),
    (["admin", "webhooks-retry"], "missing option '--connector'"),
    (["admin", "webhooks-retry", "--connector", "nope"], "--connector must be one of github, "),
    (["admin", "webhooks-retry", "--connector", "github", "--since", "yesterday"],
     "--since must be an RFC 3339 time or Unix seconds, not 'yesterday'"),
    (["secrets"], "aurora-server secrets: missing command"),
    (["secrets", "frob"], "aurora-server secrets: unknown command 'frob'"),
    (["secrets", "put"], "aurora-server secrets put: missing PATH"),
    (["secrets", "put", "aurora/x"], "give --file F or --stdin (values never go on the command line)"),
    (["secrets", "put", "aurora/x", "--stdin=yes"], "option '--stdin' takes no value"),
    (["secrets", "put", "aurora/x", "--file", "f", "--stdin"], "give --file F or --stdin"),
    (["secrets", "list", "a", "b"], "unexpected argument at position 2 (1 in all; takes 1)"),
    (["secrets", "delete"], "missing PATH"),
    (["secrets", "migrate", "--from", "local"], "missing option '--to'"),
    (["secrets", "migrate", "--from", "vault", "--to", "vault"], "--from and --to name the same backend"),
    (["secrets", "rotate-key", "--new-key-file", "a", "--new-key-env", "B"], "not both"),
    (["rca"], "aurora-server rca: missing command"),
    (["rca", "frob"], "aurora-server rca: unknown command 'frob'"),
    (["rca", "counts", "x"], "unexpected argument at position 1"),
    (["rca", "list", "--status", "bogus"], "--status must be pending, claimed, done or dead, not 'bogus'"),
    (["rca", "list", "--limit", "0"], "--limit must be an integer between 1 and 1000000, not '0'"),
    (["rca", "watch", "--lease"], "option '--lease' requires a value"),
    (["rca", "watch", "--max", "2"], "option '--max' needs --claim"),
    (["rca", "watch", "--claim", "--max", "0"], "--max must be an integer"),
    (["rca", "watch", "--once=yes"], "option '--once' takes no value"),
]


@test(timeout=240)
def test_usage_errors(t):
    data = os.path.join(t.tmp, "data")
    results = run_many(t, [args for args, _ in USAGE_ERRORS], data=data)
    for (args, want), (rc, out, err) in zip(USAGE_ERRORS, results):
        what = "aurora-server %s" % " ".join(args)
        eq(rc, 2, "%s exit status (stderr: %s)" % (what, err))
        contains(err, want, "%s says what was wrong" % what)
        contains(err, "--help'.", "%s points to --help" % what)
        eq(out, "", "%s prints nothing on stdout" % what)
        check(len(err.splitlines()) == 2, "%s: one line and the pointer" % what, err)
    check(not os.path.exists(data), "no usage error created the data directory")


@test(timeout=120)
def test_unexpected_arguments_are_not_repeated(t):
    """A secret typed on the command line by mistake (`secrets put PATH
    VALUE`) must not be echoed to stderr, which ends up in terminals'
    scrollback, CI logs and screen shares: an argument too many is named by
    its position and count, never by its text."""
    data = os.path.join(t.tmp, "data")
    secret = "s3cr3t-" + rand_tag(12)
    f = os.path.join(t.tmp, "value")
    with open(f, "wb") as fh:
        fh.write(b"v")
    cases = [
        (["secrets", "put", "aurora/x", secret], "position 2 (1 in all; takes 1)"),
        (["secrets", "put", "aurora/x", "--file", f, secret, "other"],
         "position 4 (2 in all; takes 1)"),
        (["secrets", "put", "aurora/x", "--stdin", "--", secret], "position 4 (1 in all; takes 1)"),
        (["secrets", "delete", "aurora/x", secret], "position 2 (1 in all; takes 1)"),
        (["admin", "create-key", "--org", "o", "--user", "u", secret], "position 5 (1 in all; takes none)"),
        (["admin", "--help", secret], "position 2 (1 in all)"),
        (["--help", secret], "position 2 (1 in all)"),
        (["--version", secret, secret], "position 2 (2 in all)"),
    ]
    results = run_many(t, [args for args, _ in cases], data=data, extra_env={"SECRETS_BACKEND": "local"})
    for (args, want), (rc, out, err) in zip(cases, results):
        what = "aurora-server %s" % " ".join(a if a != secret else "SECRET" for a in args)
        eq(rc, 2, "%s exit status (stderr: %s)" % (what, err.replace(secret, "SECRET")))
        check(secret not in err and secret not in out, "%s does not repeat the argument" % what,
              err.replace(secret, "SECRET"))
        contains(err, "unexpected argument at " + want, "%s names its position and count" % what)
    check(not os.path.exists(data), "no usage error created the data directory")


@test(timeout=60)
def test_state_database_is_private(t):
    """The SQLite state database (every tenant's incidents, webhook bodies,
    audit, key hashes) is 0600 however its directory came to be: created by
    the operator 0755 beforehand under umask 022, and an older file made
    0644 is made private on the next open."""
    data = os.path.join(t.tmp, "pre-made")
    os.mkdir(data, 0o755)
    os.chmod(data, 0o755)
    old = os.umask(0o022)
    try:
        rc, out, err = run(t, ["admin", "bootstrap", "--org-name", "perm", "--email", "p@example.invalid"],
                           data=data)
    finally:
        os.umask(old)
    eq(rc, 0, "bootstrap (%s)" % err)
    db = os.path.join(data, "aurora.db")
    eq(oct(os.stat(db).st_mode & 0o777), oct(0o600), "a new aurora.db")
    for name in os.listdir(data):  # -wal / -shm, if left, take the main file's mode
        if name.startswith("aurora.db"):
            eq(oct(os.stat(os.path.join(data, name)).st_mode & 0o077), oct(0), name)
    os.chmod(db, 0o644)  # as an older version left it
    rc, out, err = run(t, ["admin", "list-orgs"], data=data)
    eq(rc, 0, "list-orgs (%s)" % err)
    eq(oct(os.stat(db).st_mode & 0o777), oct(0o600), "an existing 0644 aurora.db after the next open")
    contains(err, "made private (0600)", "the change is logged")


@test(timeout=120)
def test_data_directory_writable_by_every_user_is_made_private(t):
    """A data directory of ours that any local user can write to (0777, or
    1777 like /tmp) would let them replace master.key, the TLS key or the
    database: the first command takes their write right away (and says so)
    before it creates anything there; a file in its place is refused."""
    for mode in (0o777, 0o1777):
        data = os.path.join(t.tmp, "open-%o" % mode)
        os.mkdir(data)
        os.chmod(data, mode)
        rc, out, err = run(t, ["secrets", "list"], data=data)
        eq(rc, 0, "secrets list in a %o data directory (%s)" % (mode, err))
        eq(oct(os.stat(data).st_mode & 0o7777), oct(mode & ~0o002), "others' write taken away")
        contains(err, "was writable by every user (mode %04o)" % mode, "the change is logged")
        check(os.path.exists(os.path.join(data, "master.key")), "the command ran")
    if os.geteuid() == 0:  # another user's (a Kubernetes emptyDir): said, left as it is
        data = os.path.join(t.tmp, "not-ours")
        os.mkdir(data)
        os.chown(data, 65534, 65534)
        os.chmod(data, 0o777)
        rc, out, err = run(t, ["secrets", "list"], data=data)
        eq(rc, 0, "secrets list in another user's 0777 data directory (%s)" % err)
        contains(err, "is writable by every user (mode 0777) and not ours to change", "said")
        eq(oct(os.stat(data).st_mode & 0o7777), oct(0o777), "left as it is")
    plain = os.path.join(t.tmp, "a-file")
    open(plain, "w").close()
    rc, out, err = run(t, ["admin", "list-orgs"], data=plain)
    eq(rc, 1, "a data directory that is a file (%s)" % err)
    contains(err, "data directory %s: Not a directory" % plain, "the reason")


@test(timeout=120)
def test_tls_files_named_in_the_config_file_are_not_made_up(t):
    """AURORA_TLS_CERT/AURORA_TLS_KEY given in the AURORA_CONFIG file (tls.cert,
    tls.key) are the operator's certificate: when they cannot be loaded (a typo,
    a volume not mounted yet) the server stops, naming them.  Only the
    environment variable used to count: a self-signed pair was made at the
    operator's paths and served as if it were theirs."""
    w = World(t, "tlsyaml", start=False)
    os.makedirs(w.data, exist_ok=True)
    tls = os.path.join(w.dir, "operator-tls")
    cert, key = os.path.join(tls, "server.crt"), os.path.join(tls, "server.key")
    cfg = os.path.join(w.dir, "server.yaml")
    with open(cfg, "w") as f:
        f.write("tls:\n  cert: %s\n  key: %s\n" % (cert, key))
    sandir = os.path.join(w.dir, "san", "serve")
    env = w.env(sandir)
    env["AURORA_CONFIG"] = cfg
    log = open(os.path.join(w.dir, "serve.log"), "wb")
    p = subprocess.Popen([SERVER_BIN, "serve"], env=env, cwd=w.dir, stdout=log,
                         stderr=subprocess.STDOUT)

    def stop():
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()
    t.defer(stop)
    wait_until(lambda: p.poll() is not None, 60, 0.1, "the server to refuse to start")
    err = open(os.path.join(w.dir, "serve.log"), "rb").read().decode("utf-8", "replace")
    check(p.returncode != 0, "non-zero exit", err)
    contains(err, cert, "the certificate's path is named")
    check(not os.path.exists(cert) and not os.path.exists(key),
          "no certificate or key made at the operator's paths", os.listdir(w.dir))
    eq(sanitizer_reports(sandir), [], "sanitizer clean")


@test(timeout=120)
def test_settings_and_failures(t):
    data = os.path.join(t.tmp, "data")
    # Settings that do not load: exit 2, named; --help on the same command works.
    rc, out, err = run(t, ["admin", "list-orgs"], data=data, extra_env={"AURORA_LOG_LEVEL": "loud"})
    eq(rc, 2, "bad settings exit status (%s)" % err)
    contains(err, "AURORA_LOG_LEVEL", "the bad setting is named")
    check(not os.path.exists(data), "nothing created with bad settings")
    # A command that runs and fails: exit 1, one line naming the id.
    rc, out, err = run(t, ["admin", "revoke-key", "--id", "key_nope"], data=data)
    eq((rc, out), (1, ""), "revoking a missing key (%s)" % err)
    contains(err, "no such API key: key_nope", "the missing key is named")
    rc, out, err = run(t, ["admin", "list-users", "--org=org_nope"], data=data)
    eq(rc, 1, "listing the users of a missing org (%s)" % err)
    contains(err, "no such organization: org_nope", "the missing org is named")
    rc, out, err = run(t, ["admin", "delete-org", "--id", "org_nope"], data=data)
    eq(rc, 1, "deleting a missing org (%s)" % err)
    rc, out, err = run(t, ["admin", "remove-user", "--org", "org_nope", "--user", "u"], data=data)
    eq(rc, 1, "removing a missing user (%s)" % err)
    rc, out, err = run(t, ["admin", "expire-token", "--id", "tok_nope"], data=data)
    eq(rc, 1, "expiring a missing token (%s)" % err)
    contains(err, "no such agent token: tok_nope", "the missing token is named")
    # Empty listings print nothing.
    for args in (["admin", "list-orgs"], ["admin", "list-keys"]):
        rc, out, err = run(t, args, data=data)
        eq((rc, out), (0, ""), "%s on an empty store (%s)" % (" ".join(args), err))
    # Failed webhook deliveries put back: attempts 0 and due at once, only
    # the connector's and only those received since --since.
    db = sqlite3.connect(os.path.join(data, "aurora.db"))
    for i, (connector, status, received_at) in enumerate(
            [("github", "failed", 1000), ("github", "failed", 5000), ("github", "processed", 5000),
             ("slack", "failed", 5000)]):
        db.execute("INSERT INTO webhook_deliveries (id, connector, delivery_id, body, body_encoding,"
                   " body_sha256, status, attempts, received_at, received_seq, next_attempt_at)"
                   " VALUES (?, ?, ?, '{}', 'utf8', '', ?, 8, ?, ?, 9999999999)",
                   ("whd_cli%d" % i, connector, "d%d" % i, status, received_at, received_at * 1000000))
    db.commit()
    rc, out, err = run(t, ["admin", "webhooks-retry", "--connector", "github", "--since",
                           "1970-01-01T01:00:00Z"], data=data)
    eq((rc, json.loads(out)), (0, {"connector": "github", "retried": 1}), "webhooks-retry (%s)" % err)
    rows = db.execute("SELECT id, attempts, next_attempt_at FROM webhook_deliveries ORDER BY id").fetchall()
    eq(rows, [("whd_cli0", 8, 9999999999), ("whd_cli1", 0, 0), ("whd_cli2", 8, 9999999999),
              ("whd_cli3", 8, 9999999999)], "only github's failed row since 01:00 is put back")
    db.close()


@test(timeout=180)
def test_production_startup_check(t):
    """The connector guide (GitHub, Step 4): "Set AURORA_ENV=production and a
    rotated INTERNAL_API_SECRET so the runtime startup check enforces both."
    In production the server refuses to start (exit 2, the setting named)
    without a rotated secret of at least 32 characters, or with TLS off and
    no proxy terminating it; AURORA_ENV takes development or production only."""
    dev_default = "dev-internal-secret-change-me"
    refused = [
        ({"AURORA_ENV": "production"}, "INTERNAL_API_SECRET is missing or left at the development default"),
        ({"AURORA_ENV": "production", "INTERNAL_API_SECRET": ""}, "INTERNAL_API_SECRET is missing"),
        ({"AURORA_ENV": "production", "INTERNAL_API_SECRET": dev_default},
         "INTERNAL_API_SECRET is missing or left at the development default"),
        ({"AURORA_ENV": "production", "INTERNAL_API_SECRET": "x" * 31}, "INTERNAL_API_SECRET is too short"),
        ({"AURORA_ENV": "production", "INTERNAL_API_SECRET": "r" * 40, "AURORA_PLAIN_HTTP": "true"},
         "TLS is off (AURORA_PLAIN_HTTP=true)"),
        ({"AURORA_ENV": "staging", "INTERNAL_API_SECRET": "r" * 40}, "AURORA_ENV must be 'development' or 'production'"),
        # (not production, but a typo there ran lws's poll loop without a word)
        ({"AURORA_EVENT_LOOP": "epoll"}, "AURORA_EVENT_LOOP must be 'libev' or 'poll'"),
    ]
    for env, says in refused:
        data = os.path.join(t.tmp, "data-" + rand_tag(6))
        rc, out, err = run(t, ["serve"], data=data, extra_env=dict(env, AURORA_PORT="0"))
        eq(rc, 2, "serve with %r exits 2 (%s)" % (env, err))
        contains(err, says, "the refusal names the setting (%r)" % env)
        if env.get("INTERNAL_API_SECRET"):
            check(env["INTERNAL_API_SECRET"] not in err, "the secret is not echoed", err)
    # a rotated secret of 32+ characters: production serves, and the secret works
    w = t.world("prod", extra_env={"AURORA_ENV": "production"})
    check(len(w.secret) >= 32, "the world's secret is long enough", w.secret)
    eq(w.get("/api/me").status, 200, "production server serves")
    # the development default starts in development (the default AURORA_ENV)
    d = t.world("dev", extra_env={"INTERNAL_API_SECRET": dev_default})
    eq(d.get("/api/me").status, 200, "development serves with the default secret")


@test(timeout=120)
def test_secrets_arguments_in_place(t):
    """Options after the PATH, --stdin, `--`, and POSIXLY_CORRECT (which
    would stop a plain getopt at the first non-option)."""
    data = os.path.join(t.tmp, "data")
    env = {"SECRETS_BACKEND": "local", "POSIXLY_CORRECT": "1"}
    f = os.path.join(t.tmp, "value.pem")
    value = b"-----BEGIN TEST-----\nbytes\n-----END TEST-----\n"
    with open(f, "wb") as fh:
        fh.write(value)
    rc, out, err = run(t, ["secrets", "put", "aurora/test/one", "--file", f], data=data, extra_env=env)
    eq(rc, 0, "secrets put PATH --file F under POSIXLY_CORRECT (%s)" % err)
    eq(json.loads(out)["bytes"], len(value), "the file's bytes, verbatim")
    rc, out, err = run(t, ["secrets", "put", "--stdin", "aurora/test/two"], data=data, extra_env=env,
                       stdin=b"from stdin")
    eq(rc, 0, "secrets put --stdin PATH (%s)" % err)
    rc, out, err = run(t, ["secrets", "list", "--", "aurora/test/"], data=data, extra_env=env)
    eq(rc, 0, "secrets list -- PREFIX (%s)" % err)
    eq(json.loads(out)["paths"], ["aurora/test/one", "aurora/test/two"], "both paths, no value")
    check(b"bytes" not in out.encode() and "from stdin" not in out, "list prints no value")
    rc, out, err = run(t, ["secrets", "delete", "aurora/test/one"], data=data, extra_env=env)
    eq(rc, 0, "secrets delete (%s)" % err)
    rc, out, err = run(t, ["secrets", "list", "aurora/test/"], data=data, extra_env=env)
    eq(json.loads(out)["paths"], ["aurora/test/two"], "one path left")


@test(timeout=60)
def test_routes(t):
    data = os.path.join(t.tmp, "data")
    rc, out, err = run(t, ["admin", "routes"], data=data,
                       extra_env={"AURORA_LOG_LEVEL": "not-a-level"})  # no settings read
    eq(rc, 0, "admin routes (%s)" % err)
    check(not os.path.exists(data), "admin routes touched no data directory")
    rows = [json.loads(line) for line in out.splitlines()]
    check(len(rows) > 20, "the route table has the modules' routes", len(rows))
    for r in rows:
        eq(sorted(r), ["auth", "method", "pattern"], "a route's fields")
        check(r["auth"] in ("public", "api", "internal"), "auth level", r)
        check(r["pattern"].startswith("/"), "a pattern is a path", r)
    pairs = [(r["method"], r["pattern"]) for r in rows]
    eq(len(pairs), len(set(pairs)), "no route twice")
    got = {(r["method"], r["pattern"]): r["auth"] for r in rows}
    eq(got.get(("GET", "/health")), "public", "/health is public")
    eq(got.get(("GET", "/api/me")), "api", "/api/me takes an API key")
    eq(got.get(("POST", "/api/kubectl/tokens")), "api", "token creation takes an API key")
    check(any(a == "internal" for a in got.values()), "internal routes are listed")


def admin_lines(w, *args, rc=0):
    """`aurora-server admin ARGS` on world w's store: every JSON line of stdout."""
    w.generation += 1
    sandir = os.path.join(w.dir, "san", "cli-%d" % w.generation)
    r = subprocess.run([SERVER_BIN, "admin"] + list(args), env=w.env(sandir), cwd=w.dir,
                       capture_output=True, timeout=60)
    reports = sanitizer_reports(sandir)
    check(not reports, "admin %s: sanitizer report" % " ".join(args), reports)
    out, err = r.stdout.decode(), r.stderr.decode()
    eq(r.returncode, rc, "admin %s exit status (stderr: %s)" % (" ".join(args), err))
    return [json.loads(line) for line in out.splitlines()], err


def one(w, *args):
    lines, _ = admin_lines(w, *args)
    eq(len(lines), 1, "admin %s prints one JSON object" % " ".join(args))
    return lines[0]


@test(timeout=180)
def test_list_and_revoke_keys(t):
    w = t.world()
    orgs, _ = admin_lines(w, "list-orgs")
    eq([o["id"] for o in orgs], [w.org_id], "list-orgs: the bootstrap org")
    eq(orgs[0]["created_by"], "admin", "made by the admin CLI")
    # --opt=value and --opt value both work.
    org2 = one(w, "create-org", "--name=second")["id"]
    user2 = one(w, "create-user", "--org=" + org2, "--email", "two@example.com")["id"]
    made = one(w, "create-key", "--org", org2, "--user=" + user2, "--name", "ci")
    key2, key2_id = made["api_key"], made["key_id"]
    eq(w.get("/api/me", key=key2).status, 200, "the new key works")

    keys, _ = admin_lines(w, "list-keys", "--org", org2)
    eq([(k["id"], k["user_id"], k["name"], k["revoked_at"]) for k in keys],
       [(key2_id, user2, "ci", None)], "list-keys --org: the org's key, not revoked")
    allkeys, _ = admin_lines(w, "list-keys")
    eq(sorted(k["org_id"] for k in allkeys), sorted([w.org_id, org2]), "list-keys: every org")
    raw = json.dumps(allkeys)
    check(key2 not in raw and w.api_key not in raw, "no key is ever printed by list-keys")
    check(all(k["preview"] for k in allkeys), "each key has its preview")

    revoked = one(w, "revoke-key", "--id", key2_id)
    eq((revoked["id"], revoked["org_id"]), (key2_id, org2), "revoke-key names the key")
    check(isinstance(revoked["revoked_at"], int) and revoked["revoked_at"] > 0, "revoked_at set",
          revoked)
    r = w.get("/api/me", key=key2)
    eq((r.status, r.error_code), (401, "UNAUTHORIZED"), "the revoked key is refused at once")
    eq(w.get("/api/me").status, 200, "the other org's key still works")
    again = one(w, "revoke-key", "--id=" + key2_id)
    eq(again["revoked_at"], revoked["revoked_at"], "revoking again keeps the first time")
    keys, _ = admin_lines(w, "list-keys", "--org", org2)
    eq(keys[0]["revoked_at"], revoked["revoked_at"], "list-keys shows the revocation")
    check(w.server.alive(), "server still serving")


@test(timeout=180)
def test_users_and_orgs(t):
    w = t.world()
    org = one(w, "create-org", "--name", "team")["id"]
    alice = one(w, "create-user", "--org", org, "--email", "alice@example.com", "--role", "admin")["id"]
    bob = one(w, "create-user", "--org", org, "--email", "bob@example.com")["id"]
    one(w, "add-member", "--org", org, "--user", "backend-user-1")
    users, _ = admin_lines(w, "list-users", "--org", org)
    eq([(u["id"], u["email"], u["role"], u["created_by"]) for u in users],
       [(alice, "alice@example.com", "admin", "admin"), (bob, "bob@example.com", "member", "admin"),
        ("backend-user-1", None, None, "admin")], "list-users: accounts and named members")

    # remove-user: its keys stop working at once, the others keep theirs.
    bob_key = one(w, "create-key", "--org", org, "--user", bob)["api_key"]
    alice_key = one(w, "create-key", "--org", org, "--user", alice)["api_key"]
    eq(w.get("/api/me", key=bob_key).status, 200, "bob's key works")
    gone = one(w, "remove-user", "--org", org, "--user", bob)
    eq((gone["removed"], gone["api_keys_deleted"]), (True, 1), "remove-user: bob and his key")
    eq(w.get("/api/me", key=bob_key).status, 401, "a removed user's key is refused")
    eq(w.get("/api/me", key=alice_key).status, 200, "alice's key still works")
    users, _ = admin_lines(w, "list-users", "--org", org)
    check(bob not in [u["id"] for u in users], "bob is no longer listed", users)
    _, err = admin_lines(w, "remove-user", "--org", org, "--user", bob, rc=1)
    contains(err, "no such user", "removing twice is an error")
    _, err = admin_lines(w, "create-key", "--org", org, "--user", bob, rc=1)
    contains(err, "no such user", "no key for a removed user")

    # delete-org: refused while it has a cluster, and says so; nothing changes.
    tok = one(w, "create-agent-token", "--org", org, "--user", alice, "--cluster-name", "prod")
    _, err = admin_lines(w, "delete-org", "--id", org, rc=1)
    contains(err, "still has clusters", "delete-org says why it refuses")
    eq(w.get("/api/me", key=alice_key).status, 200, "a refused delete-org changed nothing")
    # expire-token stays an operator command.
    eq(one(w, "expire-token", "--id", tok["token_id"])["expired"], True, "expire-token")

    # An org without clusters goes, with its accounts and keys.
    spare = one(w, "create-org", "--name", "spare")["id"]
    carol = one(w, "create-user", "--org", spare, "--email", "carol@example.com")["id"]
    carol_key = one(w, "create-key", "--org", spare, "--user", carol)["api_key"]
    eq(w.get("/api/me", key=carol_key).status, 200, "carol's key works")
    eq(one(w, "delete-org", "--id", spare), {"id": spare, "deleted": True}, "delete-org")
    eq(w.get("/api/me", key=carol_key).status, 401, "a deleted org's key is refused")
    orgs, _ = admin_lines(w, "list-orgs")
    eq(sorted(o["id"] for o in orgs), sorted([w.org_id, org]), "list-orgs after the delete")
    keys, _ = admin_lines(w, "list-keys", "--org", spare, rc=1)
    check(w.server.alive(), "server still serving")


@test(timeout=180)
def test_one_step_tenant_and_user_with_key(t):
    """create-org --user-email and create-user --with-key: the org, its user
    and a working key from one command each, in the right org and role."""
    w = t.world()
    made = one(w, "create-org", "--name", "tenant", "--user-email", "ops@tenant.example",
               "--role", "admin")
    eq(sorted(made), ["api_key", "id", "key_id", "user_id"], "create-org --user-email prints")
    r = w.get("/api/me", key=made["api_key"])
    eq(r.status, 200, "the new tenant's key works (%r)" % r)
    eq((r.json.get("org_id"), r.json.get("user_id")), (made["id"], made["user_id"]),
       "the key acts as the new user in the new org")
    users, _ = admin_lines(w, "list-users", "--org", made["id"])
    eq([(u["id"], u["email"], u["role"]) for u in users],
       [(made["user_id"], "ops@tenant.example", "admin")], "one admin user in the new org")
    keys, _ = admin_lines(w, "list-keys", "--org", made["id"])
    eq([(k["id"], k["user_id"]) for k in keys], [(made["key_id"], made["user_id"])], "and one key")

    member = one(w, "create-user", "--org", made["id"], "--email", "dev@tenant.example", "--with-key")
    eq(sorted(member), ["api_key", "id", "key_id"], "create-user --with-key prints")
    r = w.get("/api/me", key=member["api_key"])
    eq((r.status, r.json.get("user_id")), (200, member["id"]), "the member's key works")
    users, _ = admin_lines(w, "list-users", "--org", made["id"])
    eq([u["role"] for u in users if u["id"] == member["id"]], ["member"], "role member by default")
    check(one(w, "create-user", "--org", made["id"], "--email", "x@tenant.example").keys() == {"id"},
          "without --with-key no key is made")
    # without --user-email, create-org is unchanged: no user, no key
    bare = one(w, "create-org", "--name", "bare")
    eq(sorted(bare), ["id"], "create-org alone prints the id only")
    users, _ = admin_lines(w, "list-users", "--org", bare["id"])
    eq(users, [], "and makes no user")
    # a user for a missing org: nothing made, the error names it
    _, err = admin_lines(w, "create-user", "--org", "org_missing", "--email", "a@b.c", "--with-key", rc=1)
    contains(err, "no such organization: org_missing", "create-user --with-key in a missing org")
    eq(w.get("/api/me", key=made["api_key"]).status, 200, "other keys unaffected")
    check(w.server.alive(), "server still serving")


if __name__ == "__main__":
    main()
