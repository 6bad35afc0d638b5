#!/usr/bin/env python3
"""test_secret_leaks.py — secrets that reached the database or the log through
an unusual door, found by an audit of every log line, answer and column
(docs/security.md): each test asserts the leak is absent, against the real
binaries.

- the PKCE verifier of an OAuth flow rode with its state row in clear;
- a credential typed into a kubectl command line (--token=…, --password …)
  stayed in the audit row, which every member of the org reads;
- a DATABASE_URL libpq cannot parse had its password quoted in the log;
- a crash would have written every secret the server holds into a core file.
"""

import base64
import hashlib
import os
import sqlite3
import subprocess
import urllib.parse

from harness import Postgres, SERVER_BIN, _base_env, _san_env, check, eq, main, rand_tag, test


def db_rows(w, sql):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True,
                          timeout=10)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@test
def pkce_verifier_not_stored_in_clear(t):
    """oauth_states holds only the state's hash; the PKCE verifier must not be in the row."""
    w = t.world("gcp", start=False)
    w.extra_env.update({
        "CLIENT_ID": "x.apps.googleusercontent.com", "CLIENT_SECRET": "client-secret-xyz",
        "GCP_REDIRECT_URI": "https://127.0.0.1:%d/callback" % w.port,
        "GCP_AUTH_URL": "https://accounts.example.test/authorize",
        "GCP_TOKEN_URL": "https://accounts.example.test/token",
    })
    w.start()
    w.bootstrap()
    r = w.frontend_get("/login")
    eq(r.status, 302, "/login (%r)" % r)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["location"]).query)
    challenge = q["code_challenge"][0]
    rows = db_rows(w, "SELECT state_hash, extra FROM oauth_states")
    eq(len(rows), 1, "the login's state row")
    check(len(rows[0][1]) >= 43, "the row carries the masked verifier", rows)
    for _, extra in rows:
        v = extra[:43]
        c = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).decode().rstrip("=")
        check(c != challenge, "oauth_states.extra holds the PKCE verifier in clear: %r "
              "(S256 of it == code_challenge %r)" % (v, challenge))


@test
def audit_rows_keep_no_credentials_from_argv(t):
    """Credential flags of a kubectl command (refused by the agent's policy, after
    the row was written) are neither stored nor answered; the row still says what ran."""
    w = t.world()
    tok, _a = w.new_connected_agent()
    secret = "eyJhbGciOiJSUzI1NiJ9.SECRET-%s" % rand_tag(8)
    secret2 = "hunter2-%s" % rand_tag(8)
    r = w.kubectl(tok["cluster_id"], args=["get", "pods", "--token=" + secret, "--password", secret2,
                                           "-n", "default"])
    t.note("kubectl answered %d" % r.status)
    a = w.get("/api/audit")
    eq(a.status, 200, "GET /api/audit")
    rows = db_rows(w, "SELECT argv_json FROM audit_log")
    for s in (secret, secret2):
        check(not any(s in x[0] for x in rows), "audit_log.argv_json holds a credential", rows)
        check(s not in a.body.decode(), "GET /api/audit answers a credential", a.body[:400])
    check(any('"--token=[REDACTED]","--password","[REDACTED]","-n","default"' in x[0] for x in rows),
          "the row keeps the flags and the other arguments", rows)


@test
def audit_rows_keep_no_embedded_credentials(t):
    """Credentials no flag announces: an environment assignment whose name is a
    credential's (`kubectl set env … DB_PASSWORD=…`) and a URL's password
    (`--env=DATABASE_URL=postgres://app:…@db/app`) are neither stored nor
    answered; the names, the other pairs and the URL's host stay."""
    w = t.world()
    tok, _a = w.new_connected_agent()
    pw, token = "S3cret-%s" % rand_tag(8), "ghp_%s" % rand_tag(12)
    url_pw = "UrlPw-%s" % rand_tag(8)
    for args in (["set", "env", "deployment/api", "DB_PASSWORD=" + pw, "LOG_LEVEL=debug"],
                 ["run", "probe", "--image=busybox", "--env=GITHUB_TOKEN=" + token,
                  "--env=DATABASE_URL=postgres://app:%s@db:5432/app" % url_pw]):
        r = w.kubectl(tok["cluster_id"], args=args)
        t.note("kubectl %s answered %d" % (args[0], r.status))
    a = w.get("/api/audit")
    eq(a.status, 200, "GET /api/audit")
    rows = [x[0] for x in db_rows(w, "SELECT argv_json FROM audit_log")]
    for secret in (pw, token, url_pw):
        check(not any(secret in x for x in rows), "audit_log.argv_json holds a credential", rows)
        check(secret not in a.body.decode(), "GET /api/audit answers a credential", a.body[:400])
    check(any('"DB_PASSWORD=[REDACTED]","LOG_LEVEL=debug"' in x for x in rows), "set env row", rows)
    check(any('"--env=GITHUB_TOKEN=[REDACTED]","--env=DATABASE_URL=postgres://app:[REDACTED]@db:5432/app"'
              in x for x in rows), "run row", rows)


@test
def audit_rows_keep_no_inner_credentials(t):
    """Credentials in what a command runs: the options of the program after
    `kubectl exec … --` (mysql -p…, redis-cli -a), a shell line (`sh -c "curl
    -H 'Authorization: Bearer …'"`), and a JSON patch of a Secret.  None is
    stored or answered; the commands' other words stay."""
    w = t.world()
    tok, _a = w.new_connected_agent()
    my_pw, redis_pw = "MyPw-%s" % rand_tag(8), "RedisPw-%s" % rand_tag(8)
    bearer, b64 = "Bearer-%s" % rand_tag(12), "QjY0LXNlY3JldC0%s" % rand_tag(8)
    commands = (["exec", "db-0", "--", "mysql", "-uroot", "-p" + my_pw, "app"],
                ["exec", "cache-0", "--", "redis-cli", "-a", redis_pw, "PING"],
                ["exec", "api-0", "--", "sh", "-c",
                 "curl -s -H 'Authorization: Bearer %s' http://localhost/ | head" % bearer],
                ["patch", "secret", "db", "-p", '{"data":{"password":"%s"}}' % b64])
    for args in commands:
        r = w.kubectl(tok["cluster_id"], args=args)
        t.note("kubectl %s answered %d" % (args[0], r.status))
    a = w.get("/api/audit")
    eq(a.status, 200, "GET /api/audit")
    rows = [x[0] for x in db_rows(w, "SELECT argv_json FROM audit_log")]
    for secret in (my_pw, redis_pw, bearer, b64):
        check(not any(secret in x for x in rows), "audit_log.argv_json holds a credential", rows)
        check(secret not in a.body.decode(), "GET /api/audit answers a credential", a.body[:400])
    for kept in ('"mysql","-uroot","-p[REDACTED]","app"', '"redis-cli","-a","[REDACTED]","PING"',
                 "Authorization: Bearer [REDACTED]' http://localhost/ | head",
                 '{\\"data\\":{\\"password\\":\\"[REDACTED]\\"}}'):
        check(any(kept in x for x in rows), "a row keeps %s" % kept, rows)


@test
def older_audit_rows_redacted_by_admin(t):
    """Rows written before the redaction existed keep what was typed; `admin
    redact-audit` rewrites them with today's rule, and running it again changes
    nothing.  The old row is made by writing what an older server wrote into the
    row of a real command (sqlite3, beside the running server)."""
    w = t.world()
    tok, _a = w.new_connected_agent()
    r = w.kubectl(tok["cluster_id"], args=["get", "pods", "-n", "default"])
    eq(r.status, 200, "a command (%r)" % r)
    secret = "eyJhbGciOiJSUzI1NiJ9.OLD-%s" % rand_tag(8)
    old = '["kubectl","get","pods","--token=%s","-n","default"]' % secret
    con = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=30)
    try:
        with con:
            n = con.execute("UPDATE audit_log SET argv_json = ? WHERE argv_json LIKE '%\"pods\"%'",
                            (old,)).rowcount
    finally:
        con.close()
    eq(n, 1, "one old-style row planted")
    check(secret in w.get("/api/audit").body.decode(), "the old row shows the token before the pass")
    got = w.admin("redact-audit")
    eq((got["rows"] >= 1, got["redacted"]), (True, 1), "one row rewritten: %r" % got)
    rows = db_rows(w, "SELECT argv_json FROM audit_log")
    check(not any(secret in x[0] for x in rows), "the token is gone from the row", rows)
    check(any('"--token=[REDACTED]","-n","default"' in x[0] for x in rows), "the rest kept", rows)
    check(secret not in w.get("/api/audit").body.decode(), "GET /api/audit no longer shows it")
    if not got["wal_truncated"]:  # a reader of the server's kept the WAL: again, as told
        w.redact_until_wal_truncated("redact-audit")
    eq(w.data_files_holding(secret.encode()), [], "database files still holding the token")
    got = w.admin("redact-audit")
    eq(got["redacted"], 0, "a second pass changes nothing: %r" % got)


def _pg_files_holding(pg, needle):
    """Which files of PostgreSQL's databases (base/, not its WAL) hold these bytes."""
    held = []
    for root, _dirs, files in os.walk(os.path.join(pg.data, "base")):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                if needle in f.read():
                    held.append(os.path.relpath(path, pg.data))
    return held


@test(timeout=180)
def older_audit_rows_leave_postgres_files_with_vacuum_full(t):
    """On PostgreSQL a rewritten row's old version stays in the table's files (a
    dead row version) until VACUUM reuses its space, without zeroing it; `admin
    redact-audit --vacuum-full` rewrites the table's files, so it leaves them.  The
    old-style row is planted with psql, and CHECKPOINT writes the pages to the files
    before each look, so what is found there is what PostgreSQL keeps.  Its WAL
    (pg_wal) still holds the row until PostgreSQL recycles it: docs/security.md."""
    pg = Postgres()
    t.defer(pg.destroy)
    w = t.world(extra_env={"DATABASE_URL": pg.url})

    def psql(sql):
        r = subprocess.run([os.path.join(pg.bindir, "psql"), "-h", pg.dir, "-p", "5432", "-U",
                            "aurora", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                           capture_output=True, timeout=60)
        check(r.returncode == 0, "psql %s" % sql, r.stderr)
        return r.stdout.decode()

    tok, _a = w.new_connected_agent()
    r = w.kubectl(tok["cluster_id"], args=["get", "pods", "-n", "default"])
    eq(r.status, 200, "a command (%r)" % r)
    secret = "eyJhbGciOiJSUzI1NiJ9.PG-OLD-%s" % rand_tag(8)
    old = '["kubectl","get","pods","--token=%s","-n","default"]' % secret
    eq(psql("UPDATE audit_log SET argv_json = '%s' WHERE argv_json LIKE '%%\"pods\"%%'" % old).strip(),
       "UPDATE 1", "one old-style row planted")
    psql("CHECKPOINT")
    check(_pg_files_holding(pg, secret.encode()), "the planted row is in the table's file")

    got = w.admin("redact-audit")
    eq((got["redacted"], got.get("vacuumed"), "wal_truncated" in got), (1, False, False),
       "rewritten, not vacuumed: %r" % got)
    check(secret not in w.get("/api/audit").body.decode(), "GET /api/audit no longer shows it")
    psql("CHECKPOINT")
    check(_pg_files_holding(pg, secret.encode()),
          "without --vacuum-full the dead row version keeps the token in the file")

    got = w.admin("redact-audit", "--vacuum-full")
    eq((got["redacted"], got["vacuumed"]), (0, True), "nothing left to rewrite, vacuumed: %r" % got)
    psql("CHECKPOINT")
    eq(_pg_files_holding(pg, secret.encode()), [], "database files still holding the token")
    rows = psql("SELECT argv_json FROM audit_log")
    check('"--token=[REDACTED]","-n","default"' in rows, "the row kept, redacted", rows)
    eq(w.kubectl(tok["cluster_id"], args=["get", "pods"]).status, 200, "the server still serves")
    got = w.admin("redact-webhooks", "--vacuum-full")
    eq(got["vacuumed"], True, "the webhook table vacuumed too: %r" % got)


@test
def database_url_password_not_logged(t):
    """A DATABASE_URL the server cannot use must not have its password logged."""
    password = "Pa55%zzword-" + rand_tag(6)
    for url in ("postgresql://aurora:%s@127.0.0.1:1/aurora" % password,
                "postgresql://aurora:%s@[::1/aurora" % password):
        sandir = os.path.join(t.tmp, "san", rand_tag(6))
        env = _base_env(os.path.join(t.tmp, "home"))
        env.update(_san_env(sandir))
        env.update({"AURORA_DATA_DIR": os.path.join(t.tmp, "data-" + rand_tag(4)),
                    "DATABASE_URL": url, "AURORA_PORT": "1", "INTERNAL_API_SECRET": "x" * 40})
        r = subprocess.run([SERVER_BIN], env=env, capture_output=True, timeout=60)
        err = r.stderr.decode("utf-8", "replace")
        check(r.returncode != 0, "the server refuses a DATABASE_URL it cannot parse", err[-600:])
        check(password not in err, "the DATABASE_URL password is in the server's log", err[-600:])
        check("DATABASE_URL is not a valid connection URI" in err, "the log says what is wrong", err[-600:])
        r = subprocess.run([SERVER_BIN, "admin", "list-orgs"], env=env, capture_output=True,
                           timeout=60)
        err = r.stderr.decode("utf-8", "replace")
        check(password not in err, "the DATABASE_URL password is in `admin` stderr", err[-600:])


@test
def server_writes_no_core_file(t):
    """The server holds every tenant's secrets in memory: a crash writes no core
    file (RLIMIT_CORE 0, soft and hard, so nothing it runs can raise it).  It also
    marks itself non-dumpable; that shows only to a process of another uid, and
    these tests run as root, so the limit is what is read here."""
    w = t.world()
    with open("/proc/%d/limits" % w.server.p.pid) as f:
        line = [l for l in f if l.startswith("Max core file size")]
    eq(len(line), 1, "/proc/<pid>/limits has the core limit")
    eq(line[0].split()[4:6], ["0", "0"], "core file size soft and hard limits")
    eq(w.get("/health", auth=False).status, 200, "server serving")


@test
def database_url_unencoded_slash_or_at_not_logged(t):
    """A password with a bare '/' or '@' parses (PQconninfoParse is happy) but shifts
    into the port or the host name, which libpq's connect error quotes (found in review)."""
    tag = rand_tag(6)
    for url, leaked in (("postgresql://aurora:S3cr%s/et@127.0.0.1/aurora" % tag, "S3cr" + tag),
                        ("postgresql://aurora:S3c@ret%s@127.0.0.1:1/aurora" % tag, "ret" + tag)):
        env = _base_env(os.path.join(t.tmp, "home"))
        env.update(_san_env(os.path.join(t.tmp, "san", rand_tag(6))))
        env.update({"AURORA_DATA_DIR": os.path.join(t.tmp, "data-" + rand_tag(4)),
                    "DATABASE_URL": url, "AURORA_PORT": "1", "INTERNAL_API_SECRET": "x" * 40})
        r = subprocess.run([SERVER_BIN, "admin", "list-orgs"], env=env, capture_output=True, timeout=60)
        err = r.stderr.decode("utf-8", "replace")
        check("DATABASE_URL is not a valid connection URI" in err, "the error says what is wrong", err[-400:])
        check(leaked not in err, "part of the DATABASE_URL password is in `admin` stderr", err[-400:])


if __name__ == "__main__":
    main()
